// `loom summary RUN --plot out.png`: a run drawn by gnuplot, side by side: the training and eval
// loss by step, the retrieval accuracy by step (task data), and the latest eval's accuracy by
// distance between an answer and its evidence.
#pragma once
#include <string>

#include "launch/run_records.h"

namespace loom {

// Fails with a message naming the Debian package when gnuplot is not installed.
void plot_run(const RunRecords& records, const std::string& title, const std::string& png);

}  // namespace loom
