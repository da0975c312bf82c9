// jrnn native CPU ConvLSTM recurrence (rank 1, 2, 3; XLA FFI custom calls); shared
// machinery in common.h.
//
//   jrnn_conv_lstm_fwd: for t in 0..T-1:  z = (x[:, t] ⊛ W) + b + (h ⊛ R)  (the input
//                       convolution of any strides/padding/dilation; the recurrent one
//                       stride 1, "same");
//                       i,f,g,o = σ,σ,tanh,σ(z);  c = f c + i g;  h = o tanh(c);  y[:, t] = h
//   jrnn_conv_lstm_bwd: the reverse recurrence: dz[:, t] from dy, the saved gates and c,
//                       and dh_t = dy[:, t] + (dz[:, t+1] ⊛ᵀ R); also h_{t-1} per step
//                       (hprev, for dR). dz may overwrite the gates and hprev dy (XLA
//                       aliases them): each entry is read first.
//   jrnn_conv_weight_grad: dW[k] = Σ_{n, p} src[n, tab[p][k]]ᵀ dz[n, p] over frames n and
//                       output pixels p: the gradient of a convolution's kernel as a GEMM
//                       over gathered rows (dR from the h_{t-1} frames, dW from the input
//                       frames), the same speed inside a loop (remat) as outside.
// The input gradient dx is left to XLA.
//
// Both convolutions are GEMMs over gathered rows: a register tile holds up to 6 pixels of
// one frame and 16 units of each gate (or, backward, 16·NQ units of h); for each kernel
// tap k the tile multiplies the rows x[tab_x[p][k]] and h[nbr[p][k]] (the pixels tap k of
// pixel p reads; -1, padding, reads zeros) by W's and R's tap-k blocks. The geometry lives
// in the tables the caller builds, so one kernel serves every rank, kernel size, stride,
// dilation and padding. float32 only.
//
// Layouts (row-major float32; B batch, T time, P pixels of a frame, K taps, F filters,
// 4F gate channels in Keras' i, f, c, o order):
//   x (B, T, Pin, C)   bias (4F)   tab_x (P, Kx) int32: the input pixel tap k of pixel p reads
//   y, cseq (B, T, P, F)   gates, dz (B, T, P, 4F)   h0, c0, ... (B, P, F)
//   nbr, nbr_t (P, K) int32: the pixel tap k of pixel p reads forward, and the pixel whose
//     tap k reads p (backward); -1 for none
//   wpack (ceil(F/16), Kx C, 64)    [k C + c][q*16 + j] = W[k, c, q F + 16p + j]   (zero past F)
//   rpack (ceil(F/16), K F, 64)     [k F + c][q*16 + j] = R[k, c, q F + 16p + j]
//   rtpack (ceil(F/16NQ), K 4F, 16NQ)  [k 4F + g][j] = R[k, 16NQ p + j, g]
//   (the AVX2 build's float32 panels hold the same elements block by block: [k][16q + j] at
//   16 K q + 16 k + j of panel p, K its rows: PackedPanel in common.h)
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"

#if defined(JRNN_X86)
namespace jrnn {
namespace JRNN_ISA {
namespace {

struct ConvDims {
  int64_t B, T, P, K, F;
  int64_t Frame() const { return P * F; }  // one (P, F) frame
};

// h_{t-1} of frame b: in h0, the output y, or (no y) one of two alternating buffers.
struct Frames {
  const float* h0;
  float* y;    // (B, T, P, F) or null
  float* buf;  // (2, B, P, F) when y is null
  ConvDims d;
  const float* Prev(int64_t t, int64_t b) const {
    if (t == 0) return h0 + b * d.Frame();
    return y != nullptr ? y + (b * d.T + t - 1) * d.Frame()
                        : buf + (((t - 1) & 1) * d.B + b) * d.Frame();
  }
  float* Out(int64_t t, int64_t b) const {
    return y != nullptr ? y + (b * d.T + t) * d.Frame() : buf + ((t & 1) * d.B + b) * d.Frame();
  }
};

// acc += the rows that taps 0..K-1 of pixels p0..p0+MR-1 read from `frame` (stride `ld`
// per pixel) times the packed tap blocks of `w` (Kw rows per tap).
template <int MR, int NQ>
JRNN_TARGET inline void GatherTaps(Vec (&acc)[MR][4], const int32_t* nbr, int64_t K,
                                   int64_t p0, const float* frame, int64_t ld, const float* zeros,
                                   const Panel<float>& w, int64_t Kw) {
  // The sums in a local array, copied to acc at the end, as IncomingDh's (common.h): GCC
  // does not inline this function into the tiles, and summing into the caller's acc it
  // stored every sum at every k of the K loop (tests/test_native_codegen.py).
  Vec sums[MR][4];
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < NQ; ++q) sums[r][q] = acc[r][q];
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* rows[MR];
    for (int r = 0; r < MR; ++r) {
      const int32_t n = nbr[(p0 + r) * K + k];
      rows[r] = n >= 0 ? frame + n * ld : zeros;
    }
    AccumulateRows<MR, 0, NQ>(sums, rows, w.From(k * Kw), Kw);
  }
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < NQ; ++q) acc[r][q] = sums[r][q];
  }
}

// ------------------------------------------------------------------ forward
struct ConvFwdArgs {
  ConvDims d;
  int64_t Pin, C, Kx;  // input pixels, channels and taps
  const float *x, *wpack, *bias;
  const int32_t* tab_x;
  const float* rpack;
  const int32_t* nbr;
  const float* c0;
  Frames h;
  float *hT, *c;           // c: the running c, in cT
  float *gates, *cseq;     // null unless saving for the backward pass
  const float* zeros;      // max(C, F) zeros: what a tap outside the frame reads
};

template <int MR>
JRNN_TARGET void ConvFwdTile(const ConvFwdArgs& a, int64_t t, int64_t b, int64_t p0, int64_t u) {
  const ConvDims& d = a.d;
  const int64_t F = d.F, G = 4 * F, u0 = 16 * u;
  const Mask m = TailMask(static_cast<int>(F - u0));
  Vec acc[MR][4];
  const int64_t row0 = (b * d.T + t) * d.P + p0;  // (b, t, p0) in the (B, T, P) rows
  for (int q = 0; q < 4; ++q) {
    const Vec bq = Load(m, a.bias + q * F + u0);
    for (int r = 0; r < MR; ++r) acc[r][q] = bq;
  }
  GatherTaps<MR, 4>(acc, a.tab_x, a.Kx, p0, a.x + (b * d.T + t) * a.Pin * a.C, a.C, a.zeros,
                    PackedPanel<4>(a.wpack, u, a.Kx * a.C), a.C);
  GatherTaps<MR, 4>(acc, a.nbr, d.K, p0, a.h.Prev(t, b), F, a.zeros,
                    PackedPanel<4>(a.rpack, u, d.K * F), F);
  float* out = a.h.Out(t, b);
  for (int r = 0; r < MR; ++r) {
    const int64_t p = p0 + r, s = (b * d.P + p) * F + u0;  // (b, p) in (B, P, F) states
    const Vec c_prev = Load(m, (t == 0 ? a.c0 : a.c) + s);
    const LstmUnits v = LstmStep(acc[r], c_prev);
    Store(m, a.c + s, v.c);
    Store(m, out + p * F + u0, v.h);
    if (t == d.T - 1) Store(m, a.hT + s, v.h);
    if (a.gates != nullptr) SaveLstmStep(m, v, a.gates + (row0 + r) * G + u0, F, a.cseq + (row0 + r) * F + u0);
  }
}

// Runs tile<rows>(t, b, p0, panel) over every frame, pixel block and unit panel of every
// step (Recur's rows are frames here; its panels, pixel blocks x unit panels, unit panel
// outer so that one weight panel serves every pixel block in turn).
template <typename TileFn>
void OverFrames(ffi::ThreadPool& pool, const ConvDims& d, int64_t unit_panels, int64_t fmas,
                bool reverse, const TileFn& tile) {
  const int64_t blocks = (d.P + kMaxRows - 1) / kMaxRows;
  Recur(pool, d.B, d.T, blocks * unit_panels, fmas, reverse,
        [&](auto frames, int64_t t, int64_t b0, int64_t item, PanelShare) {
          const int64_t u = item / blocks, p0 = (item % blocks) * kMaxRows;
          for (int64_t b = b0; b < b0 + frames(); ++b) {
            ByRows(static_cast<int>(std::min<int64_t>(kMaxRows, d.P - p0)),
                   [&](auto mr) { tile(mr, t, b, p0, u); });
          }
        });
}

void ConvForward(ffi::ThreadPool& pool, const ConvFwdArgs& a) {
  const ConvDims& d = a.d;
  OverFrames(pool, d, (d.F + 15) / 16, d.B * d.P * (d.K * d.F + a.Kx * a.C) * 4 * d.F, false,
             [&](auto mr, int64_t t, int64_t b, int64_t p0, int64_t u) {
               ConvFwdTile<mr()>(a, t, b, p0, u);
             });
}

// ------------------------------------------------------------------ backward
struct ConvBwdArgs {
  ConvDims d;
  const float* rtpack;
  const int32_t* nbr_t;
  const float *gates, *cseq, *y, *h0, *c0, *dy, *dhT, *dcT;
  float *dz, *hprev;
  float* dc0;  // also carries dc between steps
  const float* zeros;  // 4F zeros
};

template <int MR, int NQ>
JRNN_TARGET void ConvBwdTile(const ConvBwdArgs& a, int64_t t, int64_t b, int64_t p0, int64_t u) {
  const ConvDims& d = a.d;
  const int64_t T = d.T, F = d.F, G = 4 * F, u0 = 16 * NQ * u;
  Mask m[4];
  for (int q = 0; q < 4; ++q) m[q] = q < NQ ? TailMask(static_cast<int>(F - u0 - 16 * q)) : 0;
  const int64_t row0 = (b * T + t) * d.P + p0;
  Vec acc[MR][4];  // dh_t = dy_t (+ dh_T at the last step) + dz_{t+1} ⊛ᵀ R
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < NQ; ++q) {
      acc[r][q] = Load(m[q], a.dy + (row0 + r) * F + u0 + 16 * q);
      if (t == T - 1) {
        acc[r][q] = Add(acc[r][q], Load(m[q], a.dhT + (b * d.P + p0 + r) * F + u0 + 16 * q));
      }
    }
  }
  if (t < T - 1) {
    GatherTaps<MR, NQ>(acc, a.nbr_t, d.K, p0, a.dz + (b * T + t + 1) * d.P * G, G, a.zeros,
                       PackedPanel<NQ>(a.rtpack, u, d.K * G), G);
  }
  for (int r = 0; r < MR; ++r) {  // h_{t-1} over the dy just read
    const float* src = t == 0 ? a.h0 + (b * d.P + p0 + r) * F : a.y + (row0 + r - d.P) * F;
    for (int q = 0; q < NQ; ++q) {
      const int64_t v = u0 + 16 * q;
      Store(m[q], a.hprev + (row0 + r) * F + v, Load(m[q], src + v));
    }
  }
  for (int r = 0; r < MR; ++r) {
    const int64_t row = row0 + r, s = (b * d.P + p0 + r) * F;
    for (int q = 0; q < NQ; ++q) {
      const Mask mq = m[q];
      if (mq == 0) continue;
      const int64_t v = u0 + 16 * q;
      const Vec c = Load(mq, a.cseq + row * F + v);
      const Vec c_prev = t == 0 ? Load(mq, a.c0 + s + v) : Load(mq, a.cseq + (row - d.P) * F + v);
      const Vec dc_next = Load(mq, (t == T - 1 ? a.dcT : a.dc0) + s + v);
      Store(mq, a.dc0 + s + v,
            LstmStepGrads(mq, acc[r][q], dc_next, a.gates + row * G + v, F, c, c_prev, a.dz + row * G + v));
    }
  }
}

// Units per backward panel: 16·NQ, the fewest 16-unit blocks (up to 4) that hold F.
inline int BackwardBlocks(int64_t F) { return F <= 16 ? 1 : F <= 32 ? 2 : 4; }

template <int NQ>
void ConvBackward(ffi::ThreadPool& pool, const ConvBwdArgs& a) {
  const ConvDims& d = a.d;
  OverFrames(pool, d, (d.F + 16 * NQ - 1) / (16 * NQ), d.B * d.P * d.K * d.F * 4 * d.F, true,
             [&](auto mr, int64_t t, int64_t b, int64_t p0, int64_t u) {
               ConvBwdTile<mr(), NQ>(a, t, b, p0, u);
             });
}

// ------------------------------------------------------------------ kernel gradient
constexpr int64_t kPixelBlock = 32;  // pixels whose dz rows a weight-gradient pass keeps in L1

struct WeightGradArgs {
  int64_t N, Pin, Pout, K, C, G;
  const float *src, *dz;  // (N, Pin, C), (N, Pout, G)
  const int32_t* tab;     // (Pout, K)
};

// out (channels c0..c0+MR-1 x columns 64j..64j+63 of one tap) += at[c0..][p] dzp[j][p]
// over the n pixels of a block: the register-tile GEMM of the forward kernels, on the
// block's gathered source rows transposed (at: C x kPixelBlock) and its dz rows packed
// in 64-column panels (dzp: panels x kPixelBlock x 64).
template <int MR>
JRNN_TARGET void WeightGradTile(const float* at, const float* dzp, int64_t n, int64_t c0,
                                int64_t j, int64_t ld, float* out /* (C, ld) of the tap */) {
  Vec acc[MR][4];
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) acc[r][q] = LoadU(out + (c0 + r) * ld + 64 * j + 16 * q);
  }
  Accumulate<MR, 0, 4>(acc, at + c0 * kPixelBlock, kPixelBlock, RowPanel<4>(dzp + j * kPixelBlock * 64), n);
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) StoreU(out + (c0 + r) * ld + 64 * j + 16 * q, acc[r][q]);
  }
}

// Frames are split into one chunk per thread, each summed into its own (K, C, 64·panels)
// partial; within a frame, blocks of kPixelBlock pixels, whose dz rows stay in L1 while
// every tile (tap, column panel, channel block) runs over them. The partials are added at
// the end in chunk order, so a given thread count always gives the same sums.
void WeightGrad(ffi::ThreadPool& pool, const WeightGradArgs& a, float* dw) {
  const int64_t panels = (a.G + 63) / 64, ld = 64 * panels, size = a.K * a.C * ld;
  const int64_t chunks = std::max<int64_t>(1, std::min(a.N, PoolThreads(pool)));
  std::vector<float> partial(chunks * size, 0.0f);
  ParallelChunks(pool, chunks, chunks, [&](int64_t g, const std::atomic<int64_t>&) {
    float* out = partial.data() + g * size;
    std::vector<float> at(a.C * kPixelBlock), dzp(panels * kPixelBlock * 64);
    for (int64_t n = a.N * g / chunks; n < a.N * (g + 1) / chunks; ++n) {
      const float* src = a.src + n * a.Pin * a.C;
      for (int64_t p0 = 0; p0 < a.Pout; p0 += kPixelBlock) {
        const int64_t np = std::min(a.Pout - p0, kPixelBlock);
        const float* dz = a.dz + (n * a.Pout + p0) * a.G;
        for (int64_t j = 0; j < panels; ++j) {  // dz rows in 64-column panels, zero past G
          for (int64_t p = 0; p < np; ++p) {
            for (int64_t c = 0; c < 64; ++c) {
              dzp[(j * kPixelBlock + p) * 64 + c] = 64 * j + c < a.G ? dz[p * a.G + 64 * j + c] : 0.0f;
            }
          }
        }
        for (int64_t k = 0; k < a.K; ++k) {
          for (int64_t p = 0; p < np; ++p) {  // the rows tap k reads, transposed
            const int32_t i = a.tab[(p0 + p) * a.K + k];
            for (int64_t c = 0; c < a.C; ++c) at[c * kPixelBlock + p] = i >= 0 ? src[i * a.C + c] : 0.0f;
          }
          for (int64_t j = 0; j < panels; ++j) {
            for (int64_t c0 = 0; c0 < a.C; c0 += kMaxRows) {
              ByRows(static_cast<int>(std::min<int64_t>(kMaxRows, a.C - c0)), [&](auto mr) {
                WeightGradTile<mr()>(at.data(), dzp.data(), np, c0, j, ld, out + k * a.C * ld);
              });
            }
          }
        }
      }
    }
  });
  for (int64_t kc = 0; kc < a.K * a.C; ++kc) {
    for (int64_t c = 0; c < a.G; ++c) {
      float sum = 0.0f;
      for (int64_t g = 0; g < chunks; ++g) sum += partial[g * size + kc * ld + c];
      dw[kc * a.G + c] = sum;
    }
  }
}

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn
#endif  // JRNN_X86

namespace jrnn {
namespace JRNN_ISA {
namespace {

constexpr ffi::DataType kF32 = ffi::DataType::F32;

// B, T, P, F from the saved gates (B, T, P, 4F) and K from the tap table (P, K), checked.
ffi::Error ReadConvDims(ffi::AnyBuffer::Dimensions gates, ffi::AnyBuffer::Dimensions nbr,
                        ConvDims* d) {
  if (gates.size() != 4 || gates[3] % 4 != 0 || nbr.size() != 2 || nbr[0] != gates[2]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jrnn native ConvLSTM: gates must be (B, T, P, 4F) and the tap table (P, K)");
  }
  *d = {gates[0], gates[1], gates[2], nbr[1], gates[3] / 4};
  return ffi::Error::Success();
}

ffi::Error ConvLstmFwdImpl(ffi::AnyBuffer x, ffi::AnyBuffer wpack, ffi::AnyBuffer bias,
                           ffi::AnyBuffer tab_x, ffi::AnyBuffer rpack, ffi::AnyBuffer nbr,
                           ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::Result<ffi::AnyBuffer> y,
                           ffi::Result<ffi::AnyBuffer> hT, ffi::Result<ffi::AnyBuffer> cT,
                           ffi::Result<ffi::AnyBuffer> gates, ffi::Result<ffi::AnyBuffer> cseq,
                           ffi::ThreadPool pool) {
#if defined(JRNN_X86)
  PoisonFreshResults({x, wpack, bias, tab_x, rpack, nbr, h0, c0}, {*y, *hT, *cT, *gates, *cseq});
  const auto xd = x.dimensions(), hd = h0.dimensions(), nd = nbr.dimensions(), td = tab_x.dimensions();
  if (xd.size() != 4 || hd.size() != 3 || nd.size() != 2 || td.size() != 2 || nd[0] != hd[1] ||
      td[0] != hd[1]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jrnn native ConvLSTM: x must be (B, T, Pin, C), h0 (B, P, F) and the tap "
                      "tables (P, K)");
  }
  const ConvDims d{xd[0], xd[1], hd[1], nd[1], hd[2]};
  const int64_t B = d.B, T = d.T, P = d.P, F = d.F, C = xd[3], Kx = td[1];
  const bool sequence = !(y->dimensions().size() == 1 && y->dimensions()[0] == 0);
  const bool save = gates->element_count() != 0;
  if (save && !sequence) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jrnn native ConvLSTM: saving for the backward pass needs y");
  }
  JRNN_CHECK(CheckTypes({{"x", x.element_type(), kF32},
                         {"wpack", wpack.element_type(), kF32},
                         {"bias", bias.element_type(), kF32},
                         {"tab_x", tab_x.element_type(), ffi::DataType::S32},
                         {"rpack", rpack.element_type(), kF32},
                         {"nbr", nbr.element_type(), ffi::DataType::S32},
                         {"h0", h0.element_type(), kF32},
                         {"c0", c0.element_type(), kF32},
                         {"y", y->element_type(), kF32},
                         {"hT", hT->element_type(), kF32},
                         {"cT", cT->element_type(), kF32},
                         {"gates", gates->element_type(), kF32},
                         {"cseq", cseq->element_type(), kF32}}));
  JRNN_CHECK(CheckDims("wpack", wpack.dimensions(), {(F + 15) / 16, Kx * C, 64}));
  JRNN_CHECK(CheckDims("bias", bias.dimensions(), {4 * F}));
  JRNN_CHECK(CheckDims("rpack", rpack.dimensions(), {(F + 15) / 16, d.K * F, 64}));
  JRNN_CHECK(CheckDims("c0", c0.dimensions(), {B, P, F}));
  if (sequence) JRNN_CHECK(CheckDims("y", y->dimensions(), {B, T, P, F}));
  if (save) {
    JRNN_CHECK(CheckDims("gates", gates->dimensions(), {B, T, P, 4 * F}));
    JRNN_CHECK(CheckDims("cseq", cseq->dimensions(), {B, T, P, F}));
  }
  if (B == 0 || P == 0 || F == 0) return ffi::Error::Success();
  if (T == 0) {
    std::copy(Data<float>(h0), Data<float>(h0) + B * P * F, Data<float>(hT));
    std::copy(Data<float>(c0), Data<float>(c0) + B * P * F, Data<float>(cT));
    return ffi::Error::Success();
  }
  std::vector<float> buffers(sequence ? 0 : 2 * B * P * F), zeros(std::max(C, F), 0.0f);
  ConvFwdArgs a{d,
                xd[2],
                C,
                Kx,
                Data<float>(x),
                Data<float>(wpack),
                Data<float>(bias),
                Data<int32_t>(tab_x),
                Data<float>(rpack),
                Data<int32_t>(nbr),
                Data<float>(c0),
                Frames{Data<float>(h0), sequence ? Data<float>(y) : nullptr, buffers.data(), d},
                Data<float>(hT),
                Data<float>(cT),
                save ? Data<float>(gates) : nullptr,
                save ? Data<float>(cseq) : nullptr,
                zeros.data()};
  if (save) AdviseHugePages(gates, cseq, y);
  ConvForward(pool, a);
  return ffi::Error::Success();
#else
  return Unsupported();
#endif
}

ffi::Error ConvLstmBwdImpl(ffi::AnyBuffer rtpack, ffi::AnyBuffer nbr_t, ffi::AnyBuffer gates,
                           ffi::AnyBuffer cseq, ffi::AnyBuffer y, ffi::AnyBuffer h0,
                           ffi::AnyBuffer c0, ffi::AnyBuffer dy, ffi::AnyBuffer dhT,
                           ffi::AnyBuffer dcT, ffi::Result<ffi::AnyBuffer> dz,
                           ffi::Result<ffi::AnyBuffer> hprev, ffi::Result<ffi::AnyBuffer> dc0,
                           ffi::ThreadPool pool) {
#if defined(JRNN_X86)
  PoisonFreshResults({rtpack, nbr_t, gates, cseq, y, h0, c0, dy, dhT, dcT}, {*dz, *hprev, *dc0});
  ConvDims d;
  JRNN_CHECK(ReadConvDims(gates.dimensions(), nbr_t.dimensions(), &d));
  const int64_t B = d.B, T = d.T, P = d.P, F = d.F;
  JRNN_CHECK(CheckTypes({{"rtpack", rtpack.element_type(), kF32},
                         {"nbr_t", nbr_t.element_type(), ffi::DataType::S32},
                         {"gates", gates.element_type(), kF32},
                         {"cseq", cseq.element_type(), kF32},
                         {"y", y.element_type(), kF32},
                         {"h0", h0.element_type(), kF32},
                         {"c0", c0.element_type(), kF32},
                         {"dy", dy.element_type(), kF32},
                         {"dhT", dhT.element_type(), kF32},
                         {"dcT", dcT.element_type(), kF32},
                         {"dz", dz->element_type(), kF32},
                         {"hprev", hprev->element_type(), kF32},
                         {"dc0", dc0->element_type(), kF32}}));
  const int nq = BackwardBlocks(F);
  JRNN_CHECK(CheckDims("rtpack", rtpack.dimensions(), {(F + 16 * nq - 1) / (16 * nq), d.K * 4 * F, 16 * nq}));
  JRNN_CHECK(CheckDims("cseq", cseq.dimensions(), {B, T, P, F}));
  for (auto [what, dims] : {std::pair{"y", y.dimensions()}, std::pair{"dy", dy.dimensions()},
                            std::pair{"hprev", hprev->dimensions()}}) {
    JRNN_CHECK(CheckDims(what, dims, {B, T, P, F}));
  }
  for (auto [what, dims] : {std::pair{"h0", h0.dimensions()}, std::pair{"c0", c0.dimensions()},
                            std::pair{"dhT", dhT.dimensions()},
                            std::pair{"dcT", dcT.dimensions()}}) {
    JRNN_CHECK(CheckDims(what, dims, {B, P, F}));
  }
  JRNN_CHECK(CheckDims("dz", dz->dimensions(), {B, T, P, 4 * F}));
  if (B == 0 || P == 0 || F == 0) return ffi::Error::Success();
  if (T == 0) {
    std::copy(Data<float>(dcT), Data<float>(dcT) + B * P * F, Data<float>(dc0));
    return ffi::Error::Success();
  }
  std::vector<float> zeros(4 * F, 0.0f);
  ConvBwdArgs a{d,
                Data<float>(rtpack),
                Data<int32_t>(nbr_t),
                Data<float>(gates),
                Data<float>(cseq),
                Data<float>(y),
                Data<float>(h0),
                Data<float>(c0),
                Data<float>(dy),
                Data<float>(dhT),
                Data<float>(dcT),
                Data<float>(dz),
                Data<float>(hprev),
                Data<float>(dc0),
                zeros.data()};
  if (nq == 1) {
    ConvBackward<1>(pool, a);
  } else if (nq == 2) {
    ConvBackward<2>(pool, a);
  } else {
    ConvBackward<4>(pool, a);
  }
  return ffi::Error::Success();
#else
  return Unsupported();
#endif
}

ffi::Error ConvWeightGradImpl(ffi::AnyBuffer src, ffi::AnyBuffer dz, ffi::AnyBuffer tab,
                              ffi::Result<ffi::AnyBuffer> dw, ffi::ThreadPool pool) {
#if defined(JRNN_X86)
  PoisonFreshResults({src, dz, tab}, {*dw});
  const auto s = src.dimensions(), z = dz.dimensions(), t = tab.dimensions();
  if (s.size() != 3 || z.size() != 3 || t.size() != 2 || z[0] != s[0] || t[0] != z[1]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jrnn native conv weight gradient: src must be (N, Pin, C), dz (N, Pout, G) "
                      "and the tap table (Pout, K)");
  }
  WeightGradArgs a{s[0], s[1], z[1], t[1], s[2], z[2], Data<float>(src), Data<float>(dz),
                   Data<int32_t>(tab)};
  JRNN_CHECK(CheckTypes({{"src", src.element_type(), kF32},
                         {"dz", dz.element_type(), kF32},
                         {"tab", tab.element_type(), ffi::DataType::S32},
                         {"dw", dw->element_type(), kF32}}));
  JRNN_CHECK(CheckDims("dw", dw->dimensions(), {a.K, a.C, a.G}));
  if (a.K * a.C * a.G == 0) return ffi::Error::Success();
  WeightGrad(pool, a, Data<float>(dw));
  return ffi::Error::Success();
#else
  return Unsupported();
#endif
}

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_conv_weight_grad), jrnn::JRNN_ISA::ConvWeightGradImpl,
                              (jrnn::AnyBinding<3, 1>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_conv_lstm_fwd), jrnn::JRNN_ISA::ConvLstmFwdImpl,
                              (jrnn::AnyBinding<8, 5>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_conv_lstm_bwd), jrnn::JRNN_ISA::ConvLstmBwdImpl,
                              (jrnn::AnyBinding<10, 3>()));
