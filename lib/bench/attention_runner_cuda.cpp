// bench-attn's CUDA runner: llmlab's CUDA attention kernels (kernels/attention) in bf16 or
// fp16 with fp32 accumulation, timed with device events. Without CUDA in the build the
// factory says so.

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

std::vector<std::uint16_t> to_16bit(const std::vector<float>& x, cuda::Storage s) {
  std::vector<std::uint16_t> h(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) h[i] = s == cuda::Storage::bf16 ? float_to_bf16(x[i]) : float_to_fp16(x[i]);
  return h;
}

DeviceBuffer upload_16bit(const std::vector<float>& x, cuda::Storage s) {
  const std::vector<std::uint16_t> h = to_16bit(x, s);
  DeviceBuffer b(h.size() * sizeof(std::uint16_t));
  copy_to_device(b.get(), h.data(), b.bytes());
  return b;
}

std::vector<float> download_16bit(const DeviceBuffer& b, cuda::Storage s) {
  std::vector<std::uint16_t> h(b.bytes() / sizeof(std::uint16_t));
  copy_to_host(h.data(), b.get(), b.bytes());
  std::vector<float> x(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) x[i] = s == cuda::Storage::bf16 ? bf16_to_float(h[i]) : fp16_to_float(h[i]);
  return x;
}

class CudaAttentionRunner final : public AttentionRunner {
 public:
  CudaAttentionRunner(AttentionImpl impl, cuda::Storage storage, bool deterministic, cuda::FlashKernel kernel,
                      cuda::DqReduction reduction)
      : impl_(impl), storage_(storage), deterministic_(deterministic), reduction_(reduction) {
    if (cuda_device_count() == 0) throw Error("bench.device: cuda, but no CUDA device is visible to this process");
    try {
      kernel_ = cuda::resolve_flash_kernel(kernel);
    } catch (const Error& e) {
      throw InputError(SourceLoc{}, "bench.flash_kernel", e.what());
    }
    if (impl_ == AttentionImpl::flash && reduction_ == cuda::DqReduction::bulk &&
        (kernel_ != cuda::FlashKernel::sm90 || deterministic_))
      throw InputError(SourceLoc{}, "bench.dq_reduction",
                       std::string("bulk is the sm90 flash backward's atomic mode, but ") +
                           (deterministic_ ? "bench.deterministic is true" : "the sm80 kernels run"));
  }

  std::string kernel() const override {
    if (impl_ != AttentionImpl::flash) return "";
    return std::string(cuda::flash_kernel_name(kernel_)) + (reduction_ == cuda::DqReduction::bulk ? "+bulk-dq" : "");
  }

  std::uint64_t memory_bytes(BenchMode mode) const override {
    if (inputs_.empty()) return 0;
    const Inputs& in = inputs_[0];
    std::uint64_t b = in.q.bytes() + in.k.bytes() + in.v.bytes() + out_.bytes() + lse_.bytes() + saved_.bytes() +
                      forward_workspace_.bytes() + cu_.bytes();
    if (mode != BenchMode::fwd) b += dout_.bytes() + dq_.bytes() + dk_.bytes() + dv_.bytes() + backward_workspace_.bytes();
    return b;
  }

 protected:
  void upload(const AttentionCase& c, const AttentionShape& s, const std::vector<AttentionInputs>& copies) override {
    shape_ = s;
    cu_host_ = c.cu_seqlens;
    if (impl_ == AttentionImpl::flash && !cuda::flash_supported(shape_))
      throw InputError(SourceLoc{}, "bench.head_dim",
                       "the CUDA flash kernel is compiled for head dims 64 and 128 (got " + std::to_string(c.head_dim) + ")");
    cu_ = DeviceBuffer(cu_host_.size() * sizeof(std::int32_t));
    copy_to_device(cu_.get(), cu_host_.data(), cu_.bytes());
    for (const AttentionInputs& x : copies)
      inputs_.push_back({upload_16bit(x.q, storage_), upload_16bit(x.k, storage_), upload_16bit(x.v, storage_)});
    dout_ = upload_16bit(copies[0].dout, storage_);
    const std::size_t q_bytes = copies[0].q.size() * 2, kv_bytes = copies[0].k.size() * 2;
    out_ = DeviceBuffer(q_bytes);
    lse_ = DeviceBuffer(static_cast<std::size_t>(s.heads * s.tokens) * sizeof(float));
    dq_ = DeviceBuffer(q_bytes);
    dk_ = DeviceBuffer(kv_bytes);
    dv_ = DeviceBuffer(kv_bytes);
    if (impl_ == AttentionImpl::flash) {
      forward_workspace_ = DeviceBuffer(cuda::flash_forward_workspace_bytes(shape_));
      backward_workspace_ = DeviceBuffer(cuda::flash_backward_workspace_bytes(shape_, deterministic_));
    } else {
      saved_ = DeviceBuffer(cuda::naive_saved_bytes(shape_, cu_host_.data()));
      backward_workspace_ = DeviceBuffer(cuda::naive_backward_workspace_bytes(shape_, cu_host_.data()));
    }
  }

  void forward(int copy) override {
    if (impl_ == AttentionImpl::flash)
      cuda::flash_forward(shape_, tensors(copy), forward_workspace_.get(), nullptr, kernel_);
    else cuda::naive_forward(shape_, tensors(copy), saved_.get(), nullptr);
  }

  void backward() override {
    if (impl_ == AttentionImpl::flash)
      cuda::flash_backward(shape_, tensors(0), backward_workspace_.get(), nullptr, deterministic_, kernel_, reduction_);
    else cuda::naive_backward(shape_, tensors(0), saved_.get(), backward_workspace_.get(), nullptr);
  }

  std::vector<double> timed(const std::function<void()>& pass, int warmup, int repeats) override {
    std::vector<double> seconds;
    for (double ms : cuda::time_on_device_ms(pass, warmup, repeats, nullptr)) seconds.push_back(ms * 1e-3);
    return seconds;
  }

  AttentionOutputs download() override {
    cuda::synchronize();
    return {download_16bit(out_, storage_), download_16bit(dq_, storage_), download_16bit(dk_, storage_),
            download_16bit(dv_, storage_)};
  }

  void free_buffers() override {
    inputs_.clear();
    for (auto* b : {&cu_, &dout_, &out_, &lse_, &dq_, &dk_, &dv_, &saved_, &forward_workspace_, &backward_workspace_})
      *b = DeviceBuffer();
  }

 private:
  struct Inputs {
    DeviceBuffer q, k, v;
  };

  cuda::AttentionTensors tensors(int copy) const {
    cuda::AttentionTensors t;
    t.storage = storage_;
    t.cu_seqlens = static_cast<const std::int32_t*>(cu_.get());
    t.cu_seqlens_host = cu_host_.data();
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

  AttentionImpl impl_;
  cuda::Storage storage_;
  bool deterministic_;
  cuda::DqReduction reduction_;
  cuda::FlashKernel kernel_ = cuda::FlashKernel::sm80;  // resolved: the forward kernel that runs
  AttentionShape shape_;
  std::vector<std::int32_t> cu_host_;
  std::vector<Inputs> inputs_;
  DeviceBuffer cu_, dout_, out_, lse_, dq_, dk_, dv_, saved_, forward_workspace_, backward_workspace_;
};

}  // namespace

std::unique_ptr<AttentionRunner> make_cuda_attention_runner(AttentionImpl impl, BenchDtype dtype, bool deterministic,
                                                            BenchFlashKernel flash_kernel,
                                                            BenchDqReduction dq_reduction) {
  const cuda::FlashKernel kernel = flash_kernel == BenchFlashKernel::sm80   ? cuda::FlashKernel::sm80
                                   : flash_kernel == BenchFlashKernel::sm90 ? cuda::FlashKernel::sm90
                                                                            : cuda::FlashKernel::automatic;
  return std::make_unique<CudaAttentionRunner>(
      impl, dtype == BenchDtype::fp16 ? cuda::Storage::fp16 : cuda::Storage::bf16, deterministic, kernel,
      dq_reduction == BenchDqReduction::bulk ? cuda::DqReduction::bulk : cuda::DqReduction::atomics);
}

std::string cuda_attention_device_name() {
  if (cuda_device_count() == 0) throw Error("bench.device: cuda, but no CUDA device is visible to this process");
  return cuda::device_name();
}

#else

std::unique_ptr<AttentionRunner> make_cuda_attention_runner(AttentionImpl, BenchDtype, bool, BenchFlashKernel,
                                                            BenchDqReduction) {
  throw Error("bench.device: cuda, but this build has no CUDA backend (nvcc was not found at configure time)");
}

std::string cuda_attention_device_name() {
  throw Error("bench.device: cuda, but this build has no CUDA backend (nvcc was not found at configure time)");
}

#endif

}  // namespace llmlab
