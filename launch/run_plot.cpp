#include "launch/run_plot.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "runtime/core/error.h"

namespace loom {
namespace {

// gnuplot's quoted strings: a single quote is written twice.
std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

// The data as named gnuplot data blocks, so the script needs no files beside it.
std::string data_blocks(const RunRecords& r) {
  std::ostringstream s;
  s << "$train << EOD\n";
  for (const auto& step : r.steps)
    if (step["loss"].is_number()) s << step.value("step", 0L) << " " << step["loss"].get<double>() << "\n";
  s << "EOD\n$eval << EOD\n";
  for (const auto& e : r.evals)
    s << e.value("step", 0L) << " " << e.value("loss", 0.0) << " " << 100.0 * e.value("accuracy", -0.01) << "\n";
  s << "EOD\n$distance << EOD\n";
  if (!r.latest_eval.is_null())
    for (const auto& [bucket, percent] : accuracy_buckets(r.latest_eval, "distance")) s << bucket << " " << percent << "\n";
  s << "EOD\n";
  return s.str();
}

}  // namespace

void plot_run(const RunRecords& r, const std::string& title, const std::string& png) {
  check(std::system("command -v gnuplot > /dev/null 2>&1") == 0,
        "--plot needs gnuplot, which is not installed (Debian: apt-get install gnuplot-nox)");
  const bool accuracy = !r.latest_eval.is_null() && r.latest_eval.contains("accuracy");
  std::ostringstream s;
  s << data_blocks(r) << "set terminal pngcairo size " << (accuracy ? 1500 : 600) << ",450\n"
    << "set output " << quoted(png) << "\n"
    << "set multiplot layout 1," << (accuracy ? 3 : 1) << " title " << quoted(title) << "\n"
    << "set grid\nset xlabel 'step'\nset title 'loss'\n"
    << "plot $train with lines title 'train'" << (r.evals.empty() ? "" : ", $eval using 1:2 with linespoints title 'eval'")
    << "\n";
  if (accuracy) {
    s << "set title 'retrieval accuracy (%)'\nset yrange [0:100]\nset key bottom right\n"
      << "plot $eval using 1:3 with linespoints title 'held-out answers'\n"
      << "set title 'accuracy by distance to the evidence (latest eval)'\nset xlabel 'tokens'\n"
      << "set style fill solid 0.6\nset boxwidth 0.7\nset xtics rotate by 45 right\n"
      << "plot $distance using 0:2:xtic(1) with boxes notitle\n";
  }
  s << "unset multiplot\n";
  FILE* gnuplot = popen("gnuplot", "w");
  check(gnuplot != nullptr, "cannot start gnuplot");
  std::fputs(s.str().c_str(), gnuplot);
  check(pclose(gnuplot) == 0, "gnuplot failed to draw '" + png + "' (its message is above)");
  std::printf("plot:        %s\n", png.c_str());
}

}  // namespace loom
