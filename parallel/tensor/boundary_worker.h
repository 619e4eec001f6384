// A thread that runs a rank's tensor-parallel boundaries (reduce + add + norm, forward and
// backward) in the order they are submitted while the caller goes on computing: TokenWeave's
// communication stream, on the CPU. Its tasks run collectives, so every rank of the group must
// submit the same tasks in the same order, and on a communicator no other thread uses.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

namespace loom {

class BoundaryWorker {
 public:
  BoundaryWorker();
  ~BoundaryWorker();  // runs what is queued, then stops
  BoundaryWorker(const BoundaryWorker&) = delete;
  BoundaryWorker& operator=(const BoundaryWorker&) = delete;

  // Runs `task` after every task submitted before it. The future's get() rethrows its failure.
  std::shared_future<void> submit(std::function<void()> task);

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace loom
