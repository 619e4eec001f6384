// LOOM_VECTOR_CLONES: a function compiled for x86-64-v4 (AVX-512), v3 (AVX2 and FMA) and baseline
// x86-64, the best picked when the program loads. The build targets baseline x86-64, where `omp simd`
// loops get 4-wide SSE and no 64-bit integer compares.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LOOM_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LOOM_VECTOR_CLONES
#endif
