#include "runtime/core/precision.h"

#include "runtime/core/config.h"
#include "runtime/core/error.h"

namespace loom {

std::string dtype_name(c10::ScalarType t) {
  switch (t) {
    case c10::kFloat: return "float32";
    case c10::kDouble: return "float64";
    case c10::kBFloat16: return "bfloat16";
    case c10::kHalf: return "float16";
    default: return c10::toString(t);
  }
}

c10::ScalarType accumulation_dtype(c10::ScalarType dtype) {
  return dtype == c10::kDouble ? c10::kDouble : c10::kFloat;
}

c10::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return c10::kFloat;
  if (name == "float64") return c10::kDouble;
  if (name == "bfloat16") return c10::kBFloat16;
  fail("unknown dtype '" + name + "'; use float32, float64 or bfloat16");
}

std::string Precision::describe() const {
  return dtype_name(param) + " parameters and compute, " + dtype_name(master) + " master weights and optimizer state, " +
         dtype_name(grad_reduce) + " gradient reduction, " + dtype_name(accumulate) + " accumulation, on " + device.str();
}

Precision resolve_precision(const Config& config, c10::Device device) {
  Precision p;
  p.device = device;
  p.param = p.compute = parse_dtype(config.train.dtype);
  p.accumulate = accumulation_dtype(p.param);
  p.master = p.accumulate;
  p.grad_reduce = config.train.reduce_dtype == "auto" ? p.master : parse_dtype(config.train.reduce_dtype);
  return p;
}

}  // namespace loom
