// bench-attn's CUDA runner: llmlab's CUDA attention kernels (kernels/attention) in bf16 or
// fp16 with fp32 accumulation, timed with device events. Without CUDA in the build the
// factory says so.
#include <cmath>
#include <cstring>

#include "bench/attention_runner.hpp"
#include "core/error.hpp"
#include "core/half_float.hpp"

#if LLMLAB_HAVE_CUDA
#include "kernels/attention/attention_cuda.hpp"
#include "ops/cuda/device_memory.hpp"
#endif

namespace llmlab {

#if LLMLAB_HAVE_CUDA
namespace {

// One device allocation, freed with its owner.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) : p_(bytes ? device_alloc(bytes) : nullptr), bytes_(bytes) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { device_free(p_); }
  void* get() const { return p_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

std::vector<std::uint16_t> to_16bit(const std::vector<float>& x, cuda::Storage s) {
  std::vector<std::uint16_t> h(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) h[i] = s == cuda::Storage::bf16 ? float_to_bf16(x[i]) : float_to_fp16(x[i]);
  return h;
}

DeviceBuffer upload(const std::vector<float>& x, cuda::Storage s) {
  const std::vector<std::uint16_t> h = to_16bit(x, s);
  DeviceBuffer b(h.size() * sizeof(std::uint16_t));
  copy_to_device(b.get(), h.data(), b.bytes());
  return b;
}

std::vector<float> download(const DeviceBuffer& b, cuda::Storage s) {
  std::vector<std::uint16_t> h(b.bytes() / sizeof(std::uint16_t));
  copy_to_host(h.data(), b.get(), b.bytes());
  std::vector<float> x(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) x[i] = s == cuda::Storage::bf16 ? bf16_to_float(h[i]) : fp16_to_float(h[i]);
  return x;
}

class CudaAttentionRunner final : public AttentionRunner {
 public:
  CudaAttentionRunner(AttentionImpl impl, cuda::Storage storage) : impl_(impl), storage_(storage) {
    if (cuda_device_count() == 0) throw Error("bench.device: cuda, but no CUDA device is visible to this process");
  }

  void load(const AttentionCase& c, const AttentionInputs& in, int copies) override {
    release();
    c_ = c;
    shape_.tokens = c.tokens();
    shape_.docs = c.docs();
    shape_.max_seqlen = c.max_doc_len();
    shape_.heads = c.heads;
    shape_.kv_heads = c.kv_heads;
    shape_.head_dim = c.head_dim;
    shape_.causal = c.causal;
    shape_.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
    if (impl_ == AttentionImpl::flash && !cuda::flash_supported(shape_))
      throw InputError(SourceLoc{}, "bench.head_dim",
                       "the CUDA flash kernel is compiled for head dims 64 and 128 (got " + std::to_string(c.head_dim) + ")");
    cu_ = DeviceBuffer(c.cu_seqlens.size() * sizeof(std::int32_t));
    copy_to_device(cu_.get(), c.cu_seqlens.data(), cu_.bytes());
    for (int i = 0; i < copies; ++i) {
      // Later copies: the same values rotated by one element (distinct memory, similar data).
      AttentionInputs x = in;
      if (i > 0)
        for (auto* t : {&x.q, &x.k, &x.v}) std::rotate(t->begin(), t->begin() + i, t->end());
      inputs_.push_back({upload(x.q, storage_), upload(x.k, storage_), upload(x.v, storage_)});
    }
    dout_ = upload(in.dout, storage_);
    const std::size_t q_bytes = in.q.size() * 2, kv_bytes = in.k.size() * 2;
    out_ = DeviceBuffer(q_bytes);
    lse_ = DeviceBuffer(static_cast<std::size_t>(c.heads * c.tokens()) * sizeof(float));
    dq_ = DeviceBuffer(q_bytes);
    dk_ = DeviceBuffer(kv_bytes);
    dv_ = DeviceBuffer(kv_bytes);
    if (impl_ == AttentionImpl::flash) {
      forward_workspace_ = DeviceBuffer(cuda::flash_forward_workspace_bytes(shape_));
      backward_workspace_ = DeviceBuffer(cuda::flash_backward_workspace_bytes(shape_));
    } else {
      saved_ = DeviceBuffer(cuda::naive_saved_bytes(shape_, c.cu_seqlens.data()));
      backward_workspace_ = DeviceBuffer(cuda::naive_backward_workspace_bytes(shape_, c.cu_seqlens.data()));
    }
    forward_done_ = backward_done_ = false;
  }

  std::vector<double> time(BenchMode mode, int warmup, int repeats) override {
    if (mode == BenchMode::bwd && !forward_done_) forward(0);
    int next = 0;
    const auto pass = [&] {
      const int copy = mode == BenchMode::fwd ? next++ % static_cast<int>(inputs_.size()) : 0;
      if (mode != BenchMode::bwd) forward(copy);
      if (mode != BenchMode::fwd) backward();
    };
    const std::vector<double> ms = cuda::time_on_device_ms(pass, warmup, repeats, nullptr);
    if (mode == BenchMode::fwd && inputs_.size() > 1) forward_done_ = false;
    std::vector<double> seconds;
    for (double m : ms) seconds.push_back(m * 1e-3);
    return seconds;
  }

  AttentionOutputs results() override {
    if (!forward_done_) forward(0);
    if (!backward_done_) backward();
    cuda::synchronize();
    return {download(out_, storage_), download(dq_, storage_), download(dk_, storage_), download(dv_, storage_)};
  }

  std::uint64_t memory_bytes(BenchMode mode) const override {
    if (inputs_.empty()) return 0;
    const Inputs& in = inputs_[0];
    std::uint64_t b = in.q.bytes() + in.k.bytes() + in.v.bytes() + out_.bytes() + lse_.bytes() + saved_.bytes() +
                      forward_workspace_.bytes() + cu_.bytes();
    if (mode != BenchMode::fwd) b += dout_.bytes() + dq_.bytes() + dk_.bytes() + dv_.bytes() + backward_workspace_.bytes();
    return b;
  }

  void release() override {
    inputs_.clear();
    for (auto* b : {&cu_, &dout_, &out_, &lse_, &dq_, &dk_, &dv_, &saved_, &forward_workspace_, &backward_workspace_})
      *b = DeviceBuffer();
    forward_done_ = backward_done_ = false;
  }

 private:
  struct Inputs {
    DeviceBuffer q, k, v;
  };

  cuda::AttentionTensors tensors(int copy) const {
    cuda::AttentionTensors t;
    t.storage = storage_;
    t.cu_seqlens = static_cast<const std::int32_t*>(cu_.get());
    t.cu_seqlens_host = c_.cu_seqlens.data();
    const Inputs& in = inputs_[static_cast<std::size_t>(copy)];
    t.q = in.q.get();
    t.k = in.k.get();
    t.v = in.v.get();
    t.out = out_.get();
    t.lse = static_cast<float*>(lse_.get());
    t.dout = dout_.get();
    t.dq = dq_.get();
    t.dk = dk_.get();
    t.dv = dv_.get();
    return t;
  }
  void forward(int copy) {
    if (impl_ == AttentionImpl::flash) cuda::flash_forward(shape_, tensors(copy), forward_workspace_.get(), nullptr);
    else cuda::naive_forward(shape_, tensors(copy), saved_.get(), nullptr);
    forward_done_ = copy == 0;
  }
  void backward() {
    if (impl_ == AttentionImpl::flash) cuda::flash_backward(shape_, tensors(0), backward_workspace_.get(), nullptr);
    else cuda::naive_backward(shape_, tensors(0), saved_.get(), backward_workspace_.get(), nullptr);
    backward_done_ = true;
  }

  AttentionImpl impl_;
  cuda::Storage storage_;
  AttentionCase c_;
  AttentionShape shape_;
  std::vector<Inputs> inputs_;
  DeviceBuffer cu_, dout_, out_, lse_, dq_, dk_, dv_, saved_, forward_workspace_, backward_workspace_;
  bool forward_done_ = false, backward_done_ = false;
};

}  // namespace

std::unique_ptr<AttentionRunner> make_cuda_attention_runner(AttentionImpl impl, BenchDtype dtype) {
  return std::make_unique<CudaAttentionRunner>(impl, dtype == BenchDtype::fp16 ? cuda::Storage::fp16 : cuda::Storage::bf16);
}

std::string cuda_attention_device_name() {
  if (cuda_device_count() == 0) throw Error("bench.device: cuda, but no CUDA device is visible to this process");
  return cuda::device_name();
}

#else

std::unique_ptr<AttentionRunner> make_cuda_attention_runner(AttentionImpl, BenchDtype) {
  throw Error("bench.device: cuda, but this build has no CUDA backend (nvcc was not found at configure time)");
}

std::string cuda_attention_device_name() {
  throw Error("bench.device: cuda, but this build has no CUDA backend (nvcc was not found at configure time)");
}

#endif

}  // namespace llmlab
