// How Loom uses floating-point types, decided in one place. A run's policy is resolved once from
// its config (resolve_precision); the kernels ask accumulation_dtype for the one rule they need.
//
// The roles (after torchtitan's MixedPrecisionPolicy and llm.c's master weights):
//   param        the dtype the model's parameters have while it computes (train.dtype)
//   compute      activations between the layers
//   master       the weights the optimizer updates and checkpoints hold
//   grad_reduce  gradients as data parallelism sums them
//   accumulate   attention partials (out, lse), norm statistics, losses and LaCT's fast-weight state
// Today every role but accumulate is train.dtype: training runs on the CPU, where float32 is the
// default and float64 serves the exactness tests. A bf16 GPU run will keep fp32 masters and reduce
// gradients in fp32 by changing only resolve_precision.
#pragma once
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>

namespace loom {

struct Config;

// float64 stays float64 (the exactness tests); float32, bfloat16 and float16 accumulate in float32.
c10::ScalarType accumulation_dtype(c10::ScalarType dtype);

// The dtype a config names (train.dtype): float32, float64 or bfloat16; and the name of a dtype.
c10::ScalarType parse_dtype(const std::string& name);
std::string dtype_name(c10::ScalarType dtype);

struct Precision {
  c10::Device device{c10::kCPU};
  c10::ScalarType param = c10::kFloat, compute = c10::kFloat, master = c10::kFloat, grad_reduce = c10::kFloat,
                  accumulate = c10::kFloat;

  int64_t param_bytes() const { return static_cast<int64_t>(c10::elementSize(param)); }
  int64_t accumulate_bytes() const { return static_cast<int64_t>(c10::elementSize(accumulate)); }
  // "float32 parameters and compute, float32 accumulation" and the like, for the start of a run.
  std::string describe() const;
};

Precision resolve_precision(const Config& config);

}  // namespace loom
