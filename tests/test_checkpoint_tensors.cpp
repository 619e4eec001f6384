// The checkpoint files of several writers read back as whole tensors: pieces of a tensor spread over
// files assemble into it, any range reads across piece boundaries, and a missing file, a gap or an
// overlap is refused with a message that names it. A flat range of a tensor-parallel slice maps to
// the runs of the whole tensor that hold the same elements (how ZeRO's parts of slices are written).
#include <filesystem>

#include "parallel/tensor/tensor_shard.h"
#include "runtime/train/checkpoint_tensors.h"
#include "tests/test_util.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

class CheckpointFiles : public ::testing::Test {
 protected:
  // `a` whole in writer 0's file; `b` (3 x 5) cut into the flat ranges {begin, count} of writers 0,
  // 1 and 2, by default [0, 4), [4, 11) and [11, 15), as ZeRO's parts cut a tensor.
  void write(const std::vector<std::pair<int64_t, int64_t>>& ranges = {{0, 4}, {4, 7}, {11, 4}}) {
    for (int64_t r = 0; r < 3; ++r) {
      TensorPieces pieces;
      if (r == 0) pieces.push_back({"a", {2, 2}, 0, a_});
      const auto [begin, count] = ranges[static_cast<size_t>(r)];
      pieces.push_back({"b", {3, 5}, begin, b_.view(-1).narrow(0, begin, count)});
      write_checkpoint_file(dir_.path(checkpoint_file_name("model", r, 3)), pieces);
    }
  }

  torch::Tensor a_ = torch::arange(4, torch::kFloat64).view({2, 2});
  torch::Tensor b_ = torch::arange(15, torch::kFloat32).view({3, 5}) * 0.5;
  test::ScratchDir dir_;
};

TEST_F(CheckpointFiles, PiecesOfSeveralWritersReadBackWhole) {
  write();
  const CheckpointTensors stored(dir_.path(), "model", 3);
  EXPECT_EQ(stored.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(stored.shape("b"), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(stored.dtype("a"), torch::kFloat64);
  EXPECT_TRUE(torch::equal(stored.load("a"), a_));
  EXPECT_TRUE(torch::equal(stored.load("b"), b_));
  // A range that starts in the first piece and ends in the third.
  EXPECT_TRUE(torch::equal(stored.load_range("b", 2, 11), b_.view(-1).narrow(0, 2, 11)));
  EXPECT_TRUE(torch::equal(stored.load_range("b", 12, 0), torch::empty({0})));
}

TEST_F(CheckpointFiles, OneWriterWritesTheNamesOfOneFile) {
  EXPECT_EQ(checkpoint_file_name("optimizer", 0, 1), "optimizer.safetensors");
  EXPECT_EQ(checkpoint_file_name("model", 2, 4), "model-00003-of-00004.safetensors");
}

TEST_F(CheckpointFiles, AMissingFileIsNamed) {
  write();
  fs::remove(dir_.path(checkpoint_file_name("model", 1, 3)));
  EXPECT_NE(test::error_of([&] { CheckpointTensors(dir_.path(), "model", 3); })
                .find("written by 3 ranks and 'model-00002-of-00003.safetensors' is missing"),
            std::string::npos);
}

TEST_F(CheckpointFiles, GapsAndOverlapsAreRefused) {
  write({{0, 4}, {4, 8}, {11, 4}});
  EXPECT_NE(test::error_of([&] { CheckpointTensors(dir_.path(), "model", 3); }).find("'b' is stored twice from element 11"),
            std::string::npos);
  write({{0, 4}, {4, 6}, {11, 4}});
  EXPECT_NE(test::error_of([&] { CheckpointTensors(dir_.path(), "model", 3); }).find("'b' is stored with elements [10, 11) missing"),
            std::string::npos);
  write({{0, 4}, {4, 7}, {11, 3}});
  EXPECT_NE(test::error_of([&] { CheckpointTensors(dir_.path(), "model", 3); }).find("'b' lacks its elements from 14 on"),
            std::string::npos);
}

TEST_F(CheckpointFiles, DamagedPieceDescriptionsAreRefused) {
  const std::string path = dir_.path(checkpoint_file_name("model", 0, 1));
  const NamedTensors piece = {{"b@4", torch::zeros({3})}};
  for (const auto& [pieces, expected] : std::vector<std::pair<std::string, std::string>>{
           {"[1, 2]", "metadata is not a JSON object"},
           {R"({"b@4": {"tensor": 3, "begin": 4, "shape": [3, 5]}})", "the description of piece 'b@4' lacks"},
           {R"({"b@4": {"tensor": "b", "begin": 14, "shape": [3, 5]}})", "piece 'b@4' reaches outside its tensor"}}) {
    write_safetensors(path, piece, {{"loom_pieces", pieces}});
    EXPECT_NE(test::error_of([&] { CheckpointTensors(dir_.path(), "model", 1); }).find(expected), std::string::npos) << pieces;
  }
}

TEST_F(CheckpointFiles, AnUnknownTensorIsNamed) {
  write();
  const CheckpointTensors stored(dir_.path(), "model", 3);
  EXPECT_NE(test::error_of([&] { stored.load("c"); }).find("has no model tensor 'c'"), std::string::npos);
}

// Every split dimension of a 3-D tensor over 3 ranks (uneven: 5 = 2 + 2 + 1), every range of every
// slice: the runs hold the slice's elements in order, and only one run unless the range crosses an
// index of the dimensions before the split.
TEST(WholeRuns, ARangeOfASliceIsTheRunsOfTheWholeTensorHoldingItsElements) {
  const std::vector<int64_t> shape{4, 5, 3};
  const auto whole = torch::arange(60, torch::kInt64).view(shape);
  for (int64_t dim = 0; dim < 3; ++dim)
    for (int64_t rank = 0; rank < 3; ++rank) {
      const TensorShard shard = split_evenly(dim, shape[static_cast<size_t>(dim)], 3, rank);
      const auto slice = take_shard(whole, shard).view(-1);
      const int64_t inner = dim == 0 ? 15 : dim == 1 ? 3 : 1, run = shard.size * inner;
      for (int64_t begin = 0; begin <= slice.numel(); ++begin)
        for (int64_t count = 0; begin + count <= slice.numel(); ++count) {
          std::vector<torch::Tensor> found;
          int64_t next = begin;
          for (const FlatRun& r : whole_runs(shard, shape, begin, count)) {
            EXPECT_EQ(r.shard_begin, next);
            next += r.count;
            found.push_back(whole.view(-1).narrow(0, r.whole_begin, r.count));
          }
          ASSERT_EQ(next, begin + count) << "dim " << dim << " rank " << rank;
          if (count > 0) EXPECT_TRUE(torch::equal(torch::cat(found), slice.narrow(0, begin, count)));
          const int64_t crossed = count == 0 ? 0 : (begin + count - 1) / run - begin / run + 1;
          EXPECT_EQ(static_cast<int64_t>(found.size()), dim == 0 ? (count > 0 ? 1 : 0) : crossed);
        }
    }
  EXPECT_EQ(whole_runs({}, shape, 7, 9).size(), 1u);  // held whole: the range itself
}

}  // namespace
}  // namespace loom
