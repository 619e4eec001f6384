#include "parallel/comm/mpi_communicator.h"

// Loom uses MPI's C API only; the deprecated C++ bindings would need another library.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <numeric>
#include <thread>

#include "runtime/core/error.h"

namespace loom {
namespace {

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}

std::string mebibytes(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

// One operation: run on its communicator's worker thread, finished (outputs copied back) on the
// caller's thread in wait().
class MpiWork final : public CommWork {
 public:
  using Run = std::function<int()>;  // a blocking MPI call; returns its error code

  MpiWork(std::string what, double timeout_s, Run run, std::function<void()> finish)
      : what_(std::move(what)), timeout_s_(timeout_s), run_(std::move(run)), finish_(std::move(finish)) {}

  void execute() {
    const int rc = run_();
    run_ = nullptr;  // releases the buffers it holds
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    if (rc != MPI_SUCCESS) error_ = mpi_error_text(rc);
    finished_.store(true, std::memory_order_release);
    done_cv_.notify_all();
  }

  bool ready() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
  }

  void wait() override {
    // A short spin first: most small operations finish within microseconds, sooner than a sleeping
    // thread is woken.
    for (int i = 0; i < 100 && !finished_.load(std::memory_order_acquire); ++i) std::this_thread::yield();
    std::unique_lock<std::mutex> lock(mutex_);
    const auto limit = std::chrono::duration<double>(timeout_s_);
    if (!done_cv_.wait_for(lock, limit, [&] { return done_; })) {
      fail(what_ + " did not finish within " + std::to_string(static_cast<int64_t>(timeout_s_)) +
           " s: another rank has died, hangs, or issued a different operation. Raise parallel.timeout_s if a rank "
           "legitimately works that long between collectives");
    }
    if (!error_.empty()) fail(what_ + " failed: " + error_);
    if (finish_) {
      auto finish = std::move(finish_);
      finish_ = nullptr;
      lock.unlock();
      finish();
    }
  }

 private:
  std::string what_;
  double timeout_s_;
  Run run_;
  std::function<void()> finish_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::atomic<bool> finished_{false};  // done_, readable without the lock
  std::string error_;
};

// MPI for the process: initialised on first use, finalised at exit (after every communicator).
void ensure_mpi() {
  struct Runtime {
    bool owns = false;
    Runtime() {
      int initialized = 0, provided = 0;
      MPI_Initialized(&initialized);
      if (initialized) {
        MPI_Query_thread(&provided);
      } else {
        // Communication threads share cores with compute: a blocking call that yields while it waits
        // lets the compute run (measured on the emulated cluster: overlap 1.4x -> 1.0x of the
        // longer of the two). A user's own setting wins.
        setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
        owns = true;
      }
      check(provided == MPI_THREAD_MULTIPLE,
            "this MPI library does not offer MPI_THREAD_MULTIPLE, which Loom's communication threads need. "
            "Use an MPI built with thread support (Debian's Open MPI has it)");
    }
    ~Runtime() {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (owns && !finalized) MPI_Finalize();
    }
  };
  static Runtime runtime;
}

// The thread that runs one communicator's operations, one after another in the order they were
// issued. Blocking MPI calls on a thread of their own overlap with the caller's compute and use
// MPI's tuned collective algorithms: its non-blocking collectives are about 2x slower here.
// Communicators have a thread each, so a long collective on one group (gradients over dp) never
// holds back another group's transfers (the ring over sp).
class Worker {
 public:
  Worker() : state_(std::make_shared<State>()) {
    thread_ = std::thread([state = state_] { loop(*state); });
  }

  // A worker stuck in an operation whose peer never came (the job is failing and about to abort)
  // is let go rather than joined, which would hang the failing rank's exit. Its state is shared
  // with the thread, so letting go is memory-safe.
  ~Worker() {
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->stop = true;
    }
    state_->wake.notify_one();
    if (busy()) thread_.detach();
    else thread_.join();
  }

  void submit(std::shared_ptr<MpiWork> work) {
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->queue.push_back(std::move(work));
    }
    state_->wake.notify_one();
  }

  // An operation is queued or running.
  bool busy() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->running || !state_->queue.empty();
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<std::shared_ptr<MpiWork>> queue;
    bool running = false, stop = false;
  };

  static void loop(State& s) {
    for (;;) {
      std::shared_ptr<MpiWork> work;
      {
        std::unique_lock<std::mutex> lock(s.mutex);
        s.running = false;
        s.wake.wait(lock, [&] { return s.stop || !s.queue.empty(); });
        if (s.queue.empty()) return;
        work = std::move(s.queue.front());
        s.queue.pop_front();
        s.running = true;
      }
      work->execute();
    }
  }

  std::shared_ptr<State> state_;
  std::thread thread_;
};

MPI_Datatype element_type(const torch::Tensor& t, bool reduce) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kInt8: return MPI_INT8_T;
    case torch::kUInt8:
    case torch::kBool: return MPI_UINT8_T;
    case torch::kBFloat16:
    case torch::kHalf:
      check(!reduce, "the MPI backend cannot reduce 16-bit floats; reduce a float32 copy instead");
      return MPI_UINT16_T;
    default: fail(std::string("the MPI backend does not move tensors of type ") + c10::toString(t.scalar_type()));
  }
}

MPI_Op reduce_op(ReduceOp op) { return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM; }

int count_of(const torch::Tensor& t) {
  check(t.numel() <= INT_MAX, "a single MPI transfer holds at most 2^31-1 elements; split the tensor");
  return static_cast<int>(t.numel());
}

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm`.
  MpiCommunicator(MPI_Comm comm, std::string name, double timeout_s)
      : comm_(comm), name_(std::move(name)), timeout_s_(timeout_s), worker_(std::make_unique<Worker>()) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }

  ~MpiCommunicator() override {
    if (worker_->busy()) return;  // an operation never finished: the job is failing, leave it to MPI_Abort
    try {
      run_blocking("free", [this] { return MPI_Comm_free(&comm_); });
    } catch (const Error&) {
      // Freeing failed while the job is going down; nothing is left to protect.
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  CommHandle start_all_reduce(torch::Tensor tensor, ReduceOp op) override {
    check_cpu(tensor);
    ContiguousOutput out(tensor);
    const MPI_Datatype type = element_type(tensor, true);
    const int size = size_;
    return submit("all_reduce", bytes_of(tensor),
                  [=] {
                    return MPI_Allreduce(MPI_IN_PLACE, out.buffer.data_ptr(), count_of(out.buffer), type, reduce_op(op), comm_);
                  },
                  [=] {
                    if (op == ReduceOp::kAvg) out.buffer.div_(size);
                    out.copy_back();
                  });
  }

  CommHandle start_reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op) override {
    check_cpu(input);
    check_cpu(output);
    const torch::Tensor in = input.contiguous();
    ContiguousOutput out(output);
    const MPI_Datatype type = element_type(input, true);
    const int size = size_;
    return submit("reduce_scatter", bytes_of(input),
                  [=] {
                    return MPI_Reduce_scatter_block(in.data_ptr(), out.buffer.data_ptr(), count_of(out.buffer), type,
                                                    reduce_op(op), comm_);
                  },
                  [=] {
                    if (op == ReduceOp::kAvg) out.buffer.div_(size);
                    out.copy_back();
                  });
  }

  CommHandle start_all_gather(torch::Tensor input, torch::Tensor output) override {
    check_cpu(input);
    check_cpu(output);
    const torch::Tensor in = input.contiguous();
    ContiguousOutput out(output);
    const MPI_Datatype type = element_type(input, false);
    return submit("all_gather", bytes_of(output),
                  [=] {
                    return MPI_Allgather(in.data_ptr(), count_of(in), type, out.buffer.data_ptr(), count_of(in), type, comm_);
                  },
                  [=] { out.copy_back(); });
  }

  CommHandle start_all_to_all(torch::Tensor input, const std::vector<int64_t>& send_rows, torch::Tensor output,
                              const std::vector<int64_t>& recv_rows) override {
    check_cpu(input);
    check_cpu(output);
    const auto send = element_layout(input, send_rows);
    const auto recv = element_layout(output, recv_rows);
    const torch::Tensor in = input.contiguous();
    ContiguousOutput out(output);
    const MPI_Datatype type = element_type(input, false);
    return submit("all_to_all", bytes_of(input),
                  [=] {
                    return MPI_Alltoallv(in.data_ptr(), send.counts.data(), send.offsets.data(), type, out.buffer.data_ptr(),
                                         recv.counts.data(), recv.offsets.data(), type, comm_);
                  },
                  [=] { out.copy_back(); });
  }

  CommHandle start_broadcast(torch::Tensor tensor, int root) override {
    check_cpu(tensor);
    ContiguousOutput out(tensor);
    const MPI_Datatype type = element_type(tensor, false);
    return submit("broadcast", bytes_of(tensor),
                  [=] { return MPI_Bcast(out.buffer.data_ptr(), count_of(out.buffer), type, root, comm_); },
                  [=] { out.copy_back(); });
  }

  CommHandle start_barrier() override {
    return submit("barrier", 0, [=] { return MPI_Barrier(comm_); }, nullptr);
  }

  CommHandle start_exchange(const std::vector<P2POp>& ops, int channel) override {
    std::vector<torch::Tensor> sends;
    std::vector<ContiguousOutput> recvs;
    std::vector<std::pair<P2POp::Kind, int>> plan;
    int64_t bytes = 0;
    for (const auto& op : ops) {
      check_cpu(op.tensor);
      bytes += bytes_of(op.tensor);
      plan.emplace_back(op.kind, op.peer);
      if (op.kind == P2POp::Kind::kSend) sends.push_back(op.tensor.contiguous());
      else recvs.emplace_back(op.tensor);
    }
    return submit("exchange of " + std::to_string(ops.size()) + " sends/receives", bytes,
                  [=] {
                    std::vector<MPI_Request> r(plan.size());
                    size_t s = 0, v = 0;
                    for (size_t i = 0; i < plan.size(); ++i) {
                      const bool send = plan[i].first == P2POp::Kind::kSend;
                      const torch::Tensor& t = send ? sends[s++] : recvs[v++].buffer;
                      const MPI_Datatype type = element_type(t, false);
                      const int rc = send ? MPI_Isend(t.data_ptr(), count_of(t), type, plan[i].second, channel, comm_, &r[i])
                                          : MPI_Irecv(t.data_ptr(), count_of(t), type, plan[i].second, channel, comm_, &r[i]);
                      if (rc != MPI_SUCCESS) return rc;
                    }
                    return MPI_Waitall(static_cast<int>(r.size()), r.data(), MPI_STATUSES_IGNORE);
                  },
                  [=] {
                    for (const auto& out : recvs) out.copy_back();
                  });
  }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    MPI_Comm child = MPI_COMM_NULL;
    run_blocking("split into '" + name + "'", [&] { return MPI_Comm_split(comm_, color, key, &child); });
    return std::make_unique<MpiCommunicator>(child, name, timeout_s_);
  }

 private:
  struct ElementLayout {
    std::vector<int> counts, offsets;
  };

  // MPI's int counts and offsets, in elements, of rows split as `rows` says.
  static ElementLayout element_layout(const torch::Tensor& t, const std::vector<int64_t>& rows) {
    const int64_t row_elements = t.numel() / std::max<int64_t>(1, t.size(0));
    ElementLayout layout;
    int64_t offset = 0;
    for (int64_t r : rows) {
      check(offset + r * row_elements <= INT_MAX, "all_to_all: the MPI backend moves at most 2^31 elements per call");
      layout.counts.push_back(static_cast<int>(r * row_elements));
      layout.offsets.push_back(static_cast<int>(offset));
      offset += r * row_elements;
    }
    return layout;
  }

  void check_cpu(const torch::Tensor& t) const {
    check(t.device().is_cpu(), "group '" + name_ + "': the MPI backend moves CPU tensors; "
                                              "CUDA tensors go through the NCCL backend");
  }

  std::string describe(const std::string& op, int64_t bytes) const {
    std::string text = "rank " + std::to_string(mpi_world_rank()) + " (rank " + std::to_string(rank_) + " of group '" + name_ +
                       "'): " + op;
    return bytes > 0 ? text + " of " + mebibytes(bytes) : text;
  }

  CommHandle submit(const std::string& op, int64_t bytes, MpiWork::Run run, std::function<void()> finish) {
    auto work = std::make_shared<MpiWork>(describe(op, bytes), timeout_s_, std::move(run), std::move(finish));
    worker_->submit(work);
    return CommHandle(work);
  }

  // Communicator management goes through the worker too, after every operation issued before it.
  void run_blocking(const std::string& op, MpiWork::Run run) { submit(op, 0, std::move(run), nullptr).wait(); }

  MPI_Comm comm_;
  std::string name_;
  double timeout_s_;
  int rank_ = 0, size_ = 1;
  std::unique_ptr<Worker> worker_;
};

}  // namespace

std::unique_ptr<Communicator> mpi_world(double timeout_s) {
  ensure_mpi();
  // A communicator of its own, so that two world communicators (or raw MPI calls on
  // MPI_COMM_WORLD) never interleave collectives on one MPI communicator.
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  const int rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  check(rc == MPI_SUCCESS, "MPI_Comm_dup of the world failed: " + mpi_error_text(rc));
  return std::make_unique<MpiCommunicator>(comm, "world", timeout_s);
}

namespace {

// MPI_Comm_rank or MPI_Comm_size of the world, or `outside` before MPI_Init or after MPI_Finalize.
int world_property(int (*query)(MPI_Comm, int*), int outside) {
  int initialized = 0, finalized = 0, value = outside;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) query(MPI_COMM_WORLD, &value);
  return value;
}

}  // namespace

int mpi_world_rank() { return world_property(MPI_Comm_rank, 0); }
int mpi_world_size() { return world_property(MPI_Comm_size, 1); }

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  const std::string all(text, static_cast<size_t>(length));
  return all.substr(0, all.find_first_of(",\n"));
}

void abort_job(const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

}  // namespace loom
