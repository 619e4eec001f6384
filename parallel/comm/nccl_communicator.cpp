#include "parallel/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "runtime/core/error.h"

namespace loom {
namespace {

void cuda_check(cudaError_t e, const std::string& what) {
  check(e == cudaSuccess, what + ": CUDA error: " + cudaGetErrorString(e));
}

void nccl_check(ncclResult_t r, const std::string& what) {
  check(r == ncclSuccess, what + ": NCCL error: " + ncclGetErrorString(r));
}

ncclDataType_t nccl_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kHalf: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt64: return ncclInt64;
    case torch::kInt32: return ncclInt32;
    case torch::kInt8: return ncclInt8;
    case torch::kUInt8:
    case torch::kBool: return ncclUint8;
    default: fail(std::string("the NCCL backend does not move tensors of type ") + c10::toString(t.scalar_type()));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
  }
  return ncclSum;
}

// One operation: done when its event on the communication stream has fired. It holds every tensor
// the operation reads or writes until then: the caching allocator knows only the stream a tensor
// was made on, so a tensor freed while the communication stream still used it (the contiguous copy
// of a strided send, a caller's temporary) would be handed out again, and overwritten, before it
// was sent. A handle dropped unwaited therefore waits for the operation first.
class NcclWork final : public CommWork {
 public:
  NcclWork(std::string what, double timeout_s, cudaEvent_t done, ncclComm_t comm, std::vector<torch::Tensor> in_use,
           std::function<void()> finish)
      : what_(std::move(what)), timeout_s_(timeout_s), done_(done), comm_(comm), in_use_(std::move(in_use)),
        finish_(std::move(finish)) {}
  ~NcclWork() override {
    if (!in_use_.empty()) cudaEventSynchronize(done_);
    cudaEventDestroy(done_);
  }

  bool ready() override { return cudaEventQuery(done_) == cudaSuccess; }

  void wait() override {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t state = cudaEventQuery(done_);
      if (state == cudaSuccess) break;
      check(state == cudaErrorNotReady, what_ + " failed: CUDA error: " + cudaGetErrorString(state));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      check(async == ncclSuccess || async == ncclInProgress, what_ + " failed: NCCL error: " + ncclGetErrorString(async));
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      check(waited < timeout_s_, what_ + " did not finish within " + std::to_string(static_cast<int64_t>(timeout_s_)) +
                                     " s: another rank has died, hangs, or issued a different operation");
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    if (finish_) {
      auto finish = std::move(finish_);
      finish_ = nullptr;
      finish();
    }
    in_use_.clear();
  }

 private:
  std::string what_;
  double timeout_s_;
  cudaEvent_t done_;
  ncclComm_t comm_;
  std::vector<torch::Tensor> in_use_;
  std::function<void()> finish_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> bootstrap, int device, double timeout_s)
      : bootstrap_(std::move(bootstrap)), device_(device), timeout_s_(timeout_s), name_(bootstrap_->name()) {
    cuda_check(cudaSetDevice(device_), "selecting CUDA device " + std::to_string(device_));
    ncclUniqueId id;
    if (bootstrap_->rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    auto bytes = torch::zeros({static_cast<int64_t>(sizeof id)}, torch::kUInt8);
    std::memcpy(bytes.data_ptr(), &id, sizeof id);
    bootstrap_->broadcast(bytes, 0).wait();
    std::memcpy(&id, bytes.data_ptr(), sizeof id);
    nccl_check(ncclCommInitRank(&comm_, bootstrap_->size(), id, bootstrap_->rank()), where("creating the NCCL communicator"));
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating the communication stream");
    cuda_check(cudaMalloc(&barrier_word_, sizeof(int32_t)), "allocating the barrier word");
  }

  ~NcclCommunicator() override {
    channels_.clear();
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaStreamDestroy(stream_);
    cudaFree(barrier_word_);
  }

  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  const std::string& name() const override { return name_; }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    return std::make_unique<NcclCommunicator>(bootstrap_->split(color, key, name), device_, timeout_s_);
  }

 protected:
  CommHandle start_all_reduce(torch::Tensor tensor, ReduceOp op) override {
    ContiguousOutput out(on_device(tensor));
    return launch("all_reduce", bytes_of(tensor), {out.buffer}, [=] {
      return ncclAllReduce(out.buffer.data_ptr(), out.buffer.data_ptr(), out.buffer.numel(), nccl_type(tensor), nccl_op(op), comm_, stream_);
    }, [=] { out.copy_back(); });
  }

  CommHandle start_reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op) override {
    const torch::Tensor in = on_device(input).contiguous();
    ContiguousOutput out(on_device(output));
    return launch("reduce_scatter", bytes_of(input), {in, out.buffer}, [=] {
      return ncclReduceScatter(in.data_ptr(), out.buffer.data_ptr(), out.buffer.numel(), nccl_type(in), nccl_op(op), comm_, stream_);
    }, [=] { out.copy_back(); });
  }

  CommHandle start_all_gather(torch::Tensor input, torch::Tensor output) override {
    const torch::Tensor in = on_device(input).contiguous();
    ContiguousOutput out(on_device(output));
    return launch("all_gather", bytes_of(output), {in, out.buffer}, [=] {
      return ncclAllGather(in.data_ptr(), out.buffer.data_ptr(), in.numel(), nccl_type(in), comm_, stream_);
    }, [=] { out.copy_back(); });
  }

  CommHandle start_all_to_all(torch::Tensor input, const std::vector<int64_t>& send_rows, torch::Tensor output,
                              const std::vector<int64_t>& recv_rows) override {
    const torch::Tensor in = on_device(input).contiguous();
    ContiguousOutput out(on_device(output));
    const int64_t row_bytes = bytes_of(in) / std::max<int64_t>(1, in.size(0));
    const int ranks = size();
    return launch("all_to_all", bytes_of(input), {in, out.buffer}, [=] {
      auto* send = static_cast<char*>(in.data_ptr());
      auto* recv = static_cast<char*>(out.buffer.data_ptr());
      ncclGroupStart();
      for (int p = 0; p < ranks; ++p) {
        ncclSend(send, send_rows[p] * row_bytes, ncclUint8, p, comm_, stream_);
        ncclRecv(recv, recv_rows[p] * row_bytes, ncclUint8, p, comm_, stream_);
        send += send_rows[p] * row_bytes;
        recv += recv_rows[p] * row_bytes;
      }
      return ncclGroupEnd();
    }, [=] { out.copy_back(); });
  }

  CommHandle start_broadcast(torch::Tensor tensor, int root) override {
    ContiguousOutput out(on_device(tensor));
    return launch("broadcast", bytes_of(tensor), {out.buffer}, [=] {
      return ncclBroadcast(out.buffer.data_ptr(), out.buffer.data_ptr(), out.buffer.numel(), nccl_type(tensor), root, comm_, stream_);
    }, [=] { out.copy_back(); });
  }

  CommHandle start_barrier() override {
    return launch("barrier", 0, {}, [=] { return ncclAllReduce(barrier_word_, barrier_word_, 1, ncclInt32, ncclSum, comm_, stream_); },
                  nullptr);
  }

  // NCCL has no tags: a second channel is a communicator of its own over the same ranks, made the
  // first time the channel is used (every rank uses its channels in the same order).
  CommHandle start_exchange(const std::vector<P2POp>& ops, int channel) override {
    if (channel != 0) {
      auto& other = channels_[channel];
      if (!other) other = std::make_unique<NcclCommunicator>(bootstrap_->split(0, rank(), name_ + "#" + std::to_string(channel)), device_, timeout_s_);
      return other->exchange(ops, 0);
    }
    std::vector<torch::Tensor> sends, in_use;
    std::vector<ContiguousOutput> recvs;
    int64_t bytes = 0;
    for (const auto& op : ops) {
      bytes += bytes_of(op.tensor);
      if (op.kind == P2POp::Kind::kSend) {
        sends.push_back(on_device(op.tensor).contiguous());
        in_use.push_back(sends.back());
      } else {
        recvs.emplace_back(on_device(op.tensor));
        in_use.push_back(recvs.back().buffer);
      }
    }
    return launch("exchange of " + std::to_string(ops.size()) + " sends/receives", bytes, std::move(in_use), [=] {
      size_t s = 0, v = 0;
      ncclGroupStart();
      for (const auto& op : ops) {
        const bool send = op.kind == P2POp::Kind::kSend;
        const torch::Tensor& t = send ? sends[s++] : recvs[v++].buffer;
        if (send) ncclSend(t.data_ptr(), bytes_of(t), ncclUint8, op.peer, comm_, stream_);
        else ncclRecv(t.data_ptr(), bytes_of(t), ncclUint8, op.peer, comm_, stream_);
      }
      return ncclGroupEnd();
    }, [=] {
      for (const auto& out : recvs) out.copy_back();
    });
  }

 private:
  std::string where(const std::string& op) const {
    return "rank " + std::to_string(rank()) + " of group '" + name_ + "' (CUDA device " + std::to_string(device_) + "): " + op;
  }

  torch::Tensor on_device(const torch::Tensor& t) const {
    check(t.is_cuda(), "group '" + name_ + "': the NCCL backend moves CUDA tensors; CPU tensors go through the MPI backend");
    return t;
  }

  // Orders the operation after the default stream's queued work, enqueues it on the communication
  // stream and returns a handle on its completion event, which holds `in_use` (every tensor the
  // operation reads or writes) until then.
  CommHandle launch(const std::string& op, int64_t bytes, std::vector<torch::Tensor> in_use,
                    const std::function<ncclResult_t()>& call, std::function<void()> finish) {
    const std::string what = where(op) + (bytes > 0 ? " of " + std::to_string(bytes) + " bytes" : "");
    cuda_check(cudaSetDevice(device_), what);
    cudaEvent_t inputs_ready, done;
    cuda_check(cudaEventCreateWithFlags(&inputs_ready, cudaEventDisableTiming), what);
    cuda_check(cudaEventRecord(inputs_ready, cudaStreamLegacy), what);
    cuda_check(cudaStreamWaitEvent(stream_, inputs_ready, 0), what);
    cudaEventDestroy(inputs_ready);
    nccl_check(call(), what);
    cuda_check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), what);
    cuda_check(cudaEventRecord(done, stream_), what);
    return CommHandle(std::make_shared<NcclWork>(what, timeout_s_, done, comm_, std::move(in_use), std::move(finish)));
  }

  std::unique_ptr<Communicator> bootstrap_;
  int device_;
  double timeout_s_;
  std::string name_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* barrier_word_ = nullptr;
  std::map<int, std::unique_ptr<NcclCommunicator>> channels_;
};

}  // namespace

std::unique_ptr<Communicator> nccl_communicator(std::unique_ptr<Communicator> bootstrap, int device, double timeout_s) {
  return std::make_unique<NcclCommunicator>(std::move(bootstrap), device, timeout_s);
}

}  // namespace loom
