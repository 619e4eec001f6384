#include "parallel/tensor/boundary_worker.h"

#include <torch/torch.h>

namespace loom {

BoundaryWorker::BoundaryWorker() : thread_([this] { run(); }) {}

BoundaryWorker::~BoundaryWorker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

std::shared_future<void> BoundaryWorker::submit(std::function<void()> task) {
  // Not a packaged_task: its shared state, which the future keeps alive, would hold the task and
  // everything it captured, so a task capturing what holds its own future would never be freed.
  auto promise = std::make_shared<std::promise<void>>();
  std::shared_future<void> done = promise->get_future().share();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back([task = std::move(task), promise] {
      try {
        task();
        promise->set_value();
      } catch (...) {
        promise->set_exception(std::current_exception());
      }
    });
  }
  wake_.notify_one();
  return done;
}

void BoundaryWorker::run() {
  // The boundaries' arithmetic records no autograd graph: the caller's autograd nodes own it.
  const torch::NoGradGuard no_grad;
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace loom
