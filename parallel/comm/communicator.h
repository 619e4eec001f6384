// One interface for moving tensors between ranks; backends: MPI (CPU tensors, every test) and NCCL
// (CUDA tensors). Every operation is asynchronous: it returns a CommHandle at once and its outputs
// are valid after wait(). Operations on one communicator start in the order the caller issued them,
// which is what makes collectives match across ranks.
//
// Failure is loud: an operation that errors or does not finish within the communicator's time-out
// throws loom::Error naming the rank, the group and the operation; the `loom` executable turns that
// into an abort of the whole job (see mpi_runtime.h), so a job never hangs silently.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace loom {

enum class ReduceOp { kSum, kAvg, kMax };

// Bytes this rank handed to and got from each kind of operation. Point-to-point and all_to_all are
// counted per peer (self excluded: nothing crosses a link); the other collectives under kGroup, as
// the bytes the rank contributes and receives (an all_reduce of n bytes counts n sent, n received),
// which does not depend on the algorithm the backend picks.
struct CommCounters {
  static constexpr int kGroup = -1;
  struct Bytes {
    int64_t sent = 0, received = 0, calls = 0;
  };
  std::map<std::string, std::map<int, Bytes>> by_kind;  // kind -> peer -> bytes

  void add(const std::string& kind, int peer, int64_t sent, int64_t received);
  Bytes of_kind(const std::string& kind) const;  // summed over peers
  Bytes with_peer(int peer) const;               // summed over kinds
  void reset() { by_kind.clear(); }
};

// The completion of one operation. wait() is idempotent.
class CommWork {
 public:
  virtual ~CommWork() = default;
  virtual void wait() = 0;
  virtual bool ready() = 0;
};

class CommHandle {
 public:
  CommHandle() = default;  // an operation with nothing to do: already complete
  explicit CommHandle(std::shared_ptr<CommWork> work) : work_(std::move(work)) {}
  void wait() {
    if (work_) work_->wait();
  }
  bool ready() { return !work_ || work_->ready(); }

 private:
  std::shared_ptr<CommWork> work_;
};

// One send or receive of a batched exchange. Tensors may be non-contiguous.
struct P2POp {
  enum class Kind { kSend, kRecv } kind;
  int peer;
  torch::Tensor tensor;
};
inline P2POp send_to(int peer, torch::Tensor t) { return {P2POp::Kind::kSend, peer, std::move(t)}; }
inline P2POp recv_from(int peer, torch::Tensor t) { return {P2POp::Kind::kRecv, peer, std::move(t)}; }

// The operations check their arguments and count bytes here, once for every backend; the backends
// implement the start_* functions.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;  // "world", "dp", ... for messages

  // In place on `tensor`.
  CommHandle all_reduce(torch::Tensor tensor, ReduceOp op);
  // `input` holds size() equal parts along dim 0; `output` receives this rank's reduced part.
  CommHandle reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op);
  // `output` holds size() parts along dim 0, part r being rank r's `input`.
  CommHandle all_gather(torch::Tensor input, torch::Tensor output);
  // Rows [sum(send_rows[:p]), +send_rows[p]) of `input` go to rank p; rank p's rows land in
  // `output` at offset sum(recv_rows[:p]). Splits may be uneven or zero.
  CommHandle all_to_all(torch::Tensor input, const std::vector<int64_t>& send_rows, torch::Tensor output,
                        const std::vector<int64_t>& recv_rows);
  CommHandle broadcast(torch::Tensor tensor, int root);
  CommHandle barrier();
  // All sends and receives start together, so any pattern (a ring in both directions) is free of
  // deadlock. `channel` separates concurrent exchanges between the same pair of ranks.
  CommHandle exchange(const std::vector<P2POp>& ops, int channel = 0);

  // Ranks with equal `color` form a new communicator, ordered by `key`. Collective over this one.
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& name) = 0;

  CommCounters& counters() { return counters_; }

 protected:
  // Arguments arrive checked: shapes agree, peers and roots are ranks, splits add up.
  virtual CommHandle start_all_reduce(torch::Tensor tensor, ReduceOp op) = 0;
  virtual CommHandle start_reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op) = 0;
  virtual CommHandle start_all_gather(torch::Tensor input, torch::Tensor output) = 0;
  virtual CommHandle start_all_to_all(torch::Tensor input, const std::vector<int64_t>& send_rows, torch::Tensor output,
                                      const std::vector<int64_t>& recv_rows) = 0;
  virtual CommHandle start_broadcast(torch::Tensor tensor, int root) = 0;
  virtual CommHandle start_barrier() = 0;
  virtual CommHandle start_exchange(const std::vector<P2POp>& ops, int channel) = 0;

 private:
  std::string where(const std::string& op) const;
  CommCounters counters_;
};

// A contiguous buffer a backend can write into, and the step that copies it back into the caller's
// (possibly non-contiguous) tensor once the operation is done.
struct ContiguousOutput {
  torch::Tensor user, buffer;
  explicit ContiguousOutput(const torch::Tensor& t) : user(t), buffer(t.is_contiguous() ? t : t.contiguous()) {}
  void copy_back() const {
    if (!buffer.is_same(user)) user.copy_(buffer);
  }
};

inline int64_t bytes_of(const torch::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// Blocking conveniences.
inline void all_reduce_now(Communicator& c, torch::Tensor t, ReduceOp op = ReduceOp::kSum) {
  c.all_reduce(std::move(t), op).wait();
}
inline void barrier_now(Communicator& c) { c.barrier().wait(); }

}  // namespace loom
