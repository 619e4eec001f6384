// The checkpoint files of several writers read back as whole tensors: pieces of a tensor spread over
// files assemble into it, any range reads across piece boundaries, and a missing file, a gap or an
// overlap is refused with a message that names it.
#include <filesystem>

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

}  // namespace
}  // namespace loom
