// Sparse decoder (embedding-bag), CUDA twin of native/cpu/sae_decode.cpp (float64 reference:
// native/ref/sae_reference.cpp):
//   decode:  out[n] = Σ_j acts[n,j] · W_dec[idx[n,j]] (+ b_dec)
// The same embedding-bag gives the encoder backward's grad_x (sae_backward.cu).
#include "cuda/common.cuh"
#include "cuda/cuda_context.h"
#include "cuda/cuda_ops.h"
#include "cuda/device_ops.h"

namespace sparsify {
namespace cuda {

namespace {

// One CTA per output row; the row's (act, idx) pairs are read from global memory (they are
// small and cached); threads stride over D.
__global__ void embedding_bag_kernel(const float* __restrict__ acts, const int* __restrict__ idx, int k,
                                     const void* __restrict__ W, DType wdt, int64_t D,
                                     const void* __restrict__ bias, DType bdt, float* __restrict__ out) {
  const int64_t n = blockIdx.x;
  const float* a = acts + n * k;
  const int* ix = idx + n * k;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < k; ++j) acc = fmaf(a[j], load_f32(W, wdt, int64_t(ix[j]) * D + d), acc);
    if (bias) acc += load_f32(bias, bdt, d);
    out[n * D + d] = acc;
  }
}

DeviceTensor upload_f32(const Tensor& t, cudaStream_t s) { return upload(t.dtype == DType::F32 ? t : t.to(DType::F32), s); }

}  // namespace

void embedding_bag(const float* acts, const int* idx, int64_t N, int k, const void* W, DType wdt, int64_t D,
                   const void* bias, DType bdt, float* out, cudaStream_t s) {
  if (N == 0 || D == 0) return;
  SPX_LAUNCH(unsigned(N), 128, 0, s, embedding_bag_kernel)(acts, idx, k, W, wdt, D, bias, bdt, out);
  CUDA_CHECK_LAUNCH();
}

Tensor decode(const Tensor& acts, const Tensor& indices, const Tensor& w_dec, const Tensor& b_dec) {
  const int64_t N = acts.dim(0), k = acts.dim(1), D = w_dec.dim(1);
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor da = upload_f32(acts, s), di = upload(indices, s), dw = upload(w_dec, s), db;
  if (b_dec.defined()) db = upload(b_dec, s);
  DeviceBuffer out(size_t(N * D) * 4, s);
  embedding_bag(static_cast<const float*>(da.data()), static_cast<const int*>(di.data()), N, int(k), dw.data(),
                w_dec.dtype, D, b_dec.defined() ? db.data() : nullptr, b_dec.dtype, out.as<float>(), s);
  Tensor r = download(out.get(), {N, D}, DType::F32, s);
  ses.sync();
  return r;
}

ResidentDecoder::~ResidentDecoder() {
  for (void* p : {w, b})
    if (p) cudaFree(p);  // waits for work that may still read them
}

std::shared_ptr<ResidentDecoder> make_resident_decoder(const Tensor& w_dec, const Tensor& b_dec) {
  auto r = std::make_shared<ResidentDecoder>();
  r->M = w_dec.dim(0);
  r->D = w_dec.dim(1);
  r->w_dtype = w_dec.dtype;
  Session ses;
  cudaStream_t s = ses.stream();
  CUDA_CHECK(cudaMalloc(&r->w, std::max<size_t>(w_dec.nbytes(), 1)));
  if (w_dec.nbytes()) CUDA_CHECK(cudaMemcpyAsync(r->w, w_dec.raw(), w_dec.nbytes(), cudaMemcpyDefault, s));
  Tensor bf;
  if (b_dec.defined()) {
    bf = b_dec.to(DType::F32);
    CUDA_CHECK(cudaMalloc(&r->b, std::max<size_t>(bf.nbytes(), 1)));
    if (bf.nbytes()) CUDA_CHECK(cudaMemcpyAsync(r->b, bf.raw(), bf.nbytes(), cudaMemcpyDefault, s));
  }
  ses.sync();  // host sources must outlive the copies
  return r;
}

Tensor resident_decode(const ResidentDecoder& dec, const Tensor& acts, const Tensor& indices) {
  const int64_t N = acts.dim(0), k = acts.dim(1), D = dec.D;
  Session ses;
  cudaStream_t s = ses.stream();
  DeviceTensor da = upload_f32(acts, s), di = upload(indices, s);
  DeviceBuffer out(size_t(N * D) * 4, s);
  embedding_bag(static_cast<const float*>(da.data()), static_cast<const int*>(di.data()), N, int(k), dec.w, dec.w_dtype,
                D, dec.b, DType::F32, out.as<float>(), s);
  Tensor r = download(out.get(), {N, D}, DType::F32, s);
  ses.sync();
  return r;
}

}  // namespace cuda
}  // namespace sparsify
