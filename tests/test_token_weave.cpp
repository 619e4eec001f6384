// Where token splitting cuts a packed sequence: balanced work on both sides, the cut a multiple of
// the tp degree, no cut below the minimum length.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <stdexcept>

#include "parallel/tensor/token_weave.h"

namespace loom {
namespace {

torch::Tensor arange(int64_t n) { return torch::arange(n, torch::kInt64); }

TEST(TokenSplit, LinearWorkAloneCutsInTheMiddle) {
  const auto pos = arange(100), doc = torch::zeros({100}, torch::kInt64);
  EXPECT_EQ(split_tokens(pos, doc, 2, 0, {1, 0}).first, 50);
  EXPECT_EQ(split_tokens(pos, doc, 4, 0, {1, 0}).first, 48) << "a multiple of 4; 48 and 52 are as close, the earlier wins";
}

// Causal attention alone: the first x tokens see x(x+1)/2 pairs of the n(n+1)/2, so the balanced
// cut is near n/sqrt(2), well past the middle.
TEST(TokenSplit, AttentionWorkMovesTheCutLater) {
  const int64_t n = 1000;
  const auto pos = arange(n), doc = torch::zeros({n}, torch::kInt64);
  const int64_t cut = split_tokens(pos, doc, 2, 0, {0, 1}).first;
  EXPECT_NEAR(static_cast<double>(cut), n / std::sqrt(2.0), 2.0);
  EXPECT_EQ(cut % 2, 0);
}

// Two documents of 500 tokens: each token sees only its own document, so the halves' work is equal
// at the document boundary.
TEST(TokenSplit, DocumentsBoundTheAttentionWork) {
  const auto pos = torch::cat({arange(500), arange(500)});
  const auto doc = torch::cat({torch::zeros({500}, torch::kInt64), torch::ones({500}, torch::kInt64)});
  EXPECT_EQ(split_tokens(pos, doc, 2, 0, {0, 1}).first, 500);
}

TEST(TokenSplit, ShortSequencesAreNotCut) {
  const auto pos = arange(64), doc = torch::zeros({64}, torch::kInt64);
  EXPECT_FALSE(split_tokens(pos, doc, 2, 65, {1, 1}).split());
  EXPECT_TRUE(split_tokens(pos, doc, 2, 64, {1, 1}).split());
  EXPECT_FALSE(split_tokens(arange(7), torch::zeros({7}, torch::kInt64), 4, 0, {1, 1}).split())
      << "fewer than two rows per rank in each half";
}

// A task's captures are freed once it has run, though its future lives on: the asynchronous
// boundaries' tasks capture the state that holds their own futures.
TEST(BoundaryWorker, ATaskIsFreedOnceRunWhileItsFutureLivesOn) {
  BoundaryWorker worker;
  auto held = std::make_shared<int>(1);
  const std::weak_ptr<int> watch = held;
  const std::shared_future<void> done = worker.submit([held] {});
  held.reset();
  done.get();
  worker.submit([] {}).get();  // the worker has moved past the first task
  EXPECT_TRUE(watch.expired()) << "the task's captures outlive it";
  const auto failed = worker.submit([] { throw std::runtime_error("boundary failed"); });
  EXPECT_THROW(failed.get(), std::runtime_error);
}

}  // namespace
}  // namespace loom
