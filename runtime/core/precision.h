// How Loom uses floating-point types, decided in one place. A run's policy is resolved once from
// its config (resolve_precision); the kernels ask accumulation_dtype for the one rule they need.
//
// The roles (after torchtitan's MixedPrecisionPolicy and llm.c's master weights):
//   param        the dtype the model's parameters have while it computes (train.dtype)
//   compute      activations between the layers (the same)
//   master       the weights the optimizer updates and checkpoints hold, and the optimizer's state:
//                float32 for bfloat16 parameters, the parameters' own dtype otherwise
//   grad_reduce  gradients as data parallelism sums them (train.reduce_dtype; auto: the master's)
//   accumulate   attention partials (out, lse), norm statistics, the loss and its softmax, and
//                LaCT's fast-weight state: float32, float64 for float64
// float64 runs keep every role in float64, which is what the exactness tests need.
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

Precision resolve_precision(const Config& config, c10::Device device = c10::Device(c10::kCPU));

}  // namespace loom
