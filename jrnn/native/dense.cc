// jrnn native CPU weight gradients of the dense recurrences' backward passes (XLA FFI
// custom call), shared by LSTM, GRU and SimpleRNN (jrnn/native/__init__.py: _product_grads):
//
//   jrnn_dense_weight_grad:  dw = sum_i a_iᵀ dz_i  (C, G)   db = sum_i dz_i  (G)
//
// over the N P rows i = (n, p) of a (N, P, C) and dz (N, P, G), float32 (a may hold
// several operands side by side, (N, P, slots C): the call reads columns slot C.. of each
// row, as the recurrences' ReadSlot says). With `shifted`,
// row (n, p) of the left operand is the state that step p's recurrent product read:
// a[n, p - 1] (a[n, p + 1] when `reverse`), or first[n] (N, C) at the first step. So dR
// reads y and h0 in place, without XLA building h_prev.
//
// Measured alone on the AVX2 benchmark machine, XLA:CPU runs these products at 68-156
// GFLOP/s, this kernel at 140-164 and NumPy's BLAS at 166-183. Here a register tile is 6
// rows of dw x 64 columns (AccumulateColumns). Per block of kBlock rows, its 6 rows are 6
// columns of a, packed side by side per row (a (K, 6) micro-panel), and its columns are a
// panel of dz, packed as ColumnPanelAt says. Each thread owns a set of
// column panels (and, when there are fewer panels than threads, a range of dw's rows), so
// every dw and db entry is summed block by block in the same order whatever the thread
// count.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"

#if defined(JRNN_X86)
namespace jrnn {
namespace JRNN_ISA {
namespace {

// Rows per block (tried 32, 64, 128, 256, 512: 256 was fastest). An AVX2 K loop reads 16 KiB
// of the dz panel and 6 KiB of a's micro-panel: both stay in L1.
constexpr int64_t kBlock = 256;

struct DenseGradArgs {
  int64_t N, P, C, G;
  const float *a, *dz, *first;
  bool shifted, reverse;
  int64_t lda;  // a's row stride (slots C)
  // Row i of the left operand (see the top of the file).
  const float* Row(int64_t i) const {
    if (!shifted) return a + i * lda;
    const int64_t n = i / P, p = i % P + (reverse ? 1 : -1);
    return p < 0 || p >= P ? first + n * C : a + (n * P + p) * lda;
  }
};

// dw rows m0 .. m0 + MR - 1, columns 64j .. 64j + 63 (masked past G) += the K rows' products.
template <int MR>
JRNN_TARGET void DenseGradTile(const float* at, const float* panel, int64_t K,
                               int64_t m0, int64_t j, int64_t G, float* dw) {
  Mask m[4];
  UnitMasks(G, j, m);
  Vec acc[MR][4];
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) acc[r][q] = Load(m[q], dw + (m0 + r) * G + 64 * j + 16 * q);
  }
  AccumulateColumns<MR>(acc, at, panel, K);
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) Store(m[q], dw + (m0 + r) * G + 64 * j + 16 * q, acc[r][q]);
  }
}

// dz rows k0 .. k0 + K - 1, panels p0 .. p1 - 1, into pack (ColumnPanelAt, zero past G),
// and their column sums added to db when db is not null.
JRNN_TARGET void PackBlock(const DenseGradArgs& a, int64_t k0, int64_t K, int64_t p0,
                           int64_t p1, float* pack, float* db) {
  for (int64_t j = p0; j < p1; ++j) {
    Mask m[4];
    UnitMasks(a.G, j, m);
    float* panel = pack + (j - p0) * kBlock * 64;
    Vec sum[4] = {Zero(), Zero(), Zero(), Zero()};
    for (int64_t k = 0; k < K; ++k) {
      const float* row = a.dz + (k0 + k) * a.G + 64 * j;
      for (int q = 0; q < 4; ++q) {
        const Vec v = Load(m[q], row + 16 * q);
        StoreU(panel + ColumnPanelAt(K, k, 16 * q), v);
        sum[q] = Add(sum[q], v);
      }
    }
    if (db == nullptr) continue;
    for (int q = 0; q < 4; ++q) {
      float* at = db + 64 * j + 16 * q;
      Store(m[q], at, Add(Load(m[q], at), sum[q]));
    }
  }
}

void DenseWeightGrad(ffi::ThreadPool& pool, const DenseGradArgs& a, float* dw, float* db) {
  const int64_t rows = a.N * a.P, panels = (a.G + 63) / 64, tiles = (a.C + kMaxRows - 1) / kMaxRows;
  const int64_t threads = PoolThreads(pool);
  const int64_t col_groups = std::min(panels, threads);
  const int64_t row_groups = std::max<int64_t>(1, std::min(tiles, threads / col_groups));
  std::fill(dw, dw + a.C * a.G, 0.0f);
  std::fill(db, db + a.G, 0.0f);
  if (a.C == 0 || a.G == 0 || rows == 0) return;
  ParallelChunks(pool, threads, col_groups * row_groups, [&](int64_t g, const std::atomic<int64_t>&) {
    const int64_t cg = g / row_groups, rg = g % row_groups;
    const int64_t p0 = panels * cg / col_groups, p1 = panels * (cg + 1) / col_groups;
    const int64_t m_lo = kMaxRows * (tiles * rg / row_groups);
    const int64_t m_hi = std::min(a.C, kMaxRows * (tiles * (rg + 1) / row_groups));
    std::vector<float> apack(((m_hi - m_lo + kMaxRows - 1) / kMaxRows) * kBlock * kMaxRows);
    std::vector<float> pack((p1 - p0) * kBlock * 64);
    for (int64_t k0 = 0; k0 < rows; k0 += kBlock) {
      const int64_t K = std::min(kBlock, rows - k0);
      for (int64_t k = 0; k < K; ++k) {  // a's columns m_lo.. in (K, kMaxRows) micro-panels
        const float* src = a.Row(k0 + k);
        float* dst = apack.data() + k * kMaxRows;
        int64_t m0 = m_lo;
        for (; m0 + kMaxRows <= m_hi; m0 += kMaxRows, dst += kBlock * kMaxRows) {
          for (int r = 0; r < kMaxRows; ++r) dst[r] = src[m0 + r];  // inline, not memmove
        }
        std::copy(src + m0, src + m_hi, dst);
      }
      PackBlock(a, k0, K, p0, p1, pack.data(), rg == 0 ? db : nullptr);
      for (int64_t j = p0; j < p1; ++j) {
        const float* panel = pack.data() + (j - p0) * kBlock * 64;
        for (int64_t m0 = m_lo; m0 < m_hi; m0 += kMaxRows) {
          ByRows(static_cast<int>(std::min<int64_t>(kMaxRows, m_hi - m0)), [&](auto mr) {
            DenseGradTile<mr()>(apack.data() + (m0 - m_lo) * kBlock, panel, K, m0, j,
                                a.G, dw);
          });
        }
      }
    }
  });
}

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn
#endif  // JRNN_X86

namespace jrnn {
namespace JRNN_ISA {
namespace {

ffi::Error DenseWeightGradImpl(ffi::AnyBuffer a, ffi::AnyBuffer dz, ffi::AnyBuffer first,
                               ffi::Result<ffi::AnyBuffer> dw, ffi::Result<ffi::AnyBuffer> db,
                               ffi::ThreadPool pool, bool shifted, bool reverse, int64_t slot) {
#if defined(JRNN_X86)
  PoisonFreshResults({a, dz, first}, {*dw, *db});
  const auto ad = a.dimensions(), zd = dz.dimensions(), wd = dw->dimensions();
  if (zd.size() != 3 || wd.size() != 2) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jrnn native dense weight gradient: dz must be (N, P, G) and dw (C, G)");
  }
  const int64_t C = wd[0];
  int64_t slots;
  JRNN_CHECK(ReadSlot("a", ad, zd[0], zd[1], C, slot, &slots));
  const DenseGradArgs args{zd[0], zd[1], C, zd[2], Data<float>(a) + slot * C, Data<float>(dz),
                           Data<float>(first), shifted, reverse, slots * C};
  const ffi::DataType f32 = ffi::DataType::F32;
  JRNN_CHECK(CheckTypes({{"a", a.element_type(), f32},
                         {"dz", dz.element_type(), f32},
                         {"first", first.element_type(), f32},
                         {"dw", dw->element_type(), f32},
                         {"db", db->element_type(), f32}}));
  if (shifted) JRNN_CHECK(CheckDims("first", first.dimensions(), {args.N, args.C}));
  JRNN_CHECK(CheckDims("dw", dw->dimensions(), {args.C, args.G}));
  JRNN_CHECK(CheckDims("db", db->dimensions(), {args.G}));
  DenseWeightGrad(pool, args, Data<float>(dw), Data<float>(db));
  return ffi::Error::Success();
#else
  return Unsupported();
#endif
}

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_dense_weight_grad), jrnn::JRNN_ISA::DenseWeightGradImpl,
                              (jrnn::AnyBinding<3, 2>().Attr<bool>("shifted").Attr<bool>("reverse").Attr<int64_t>("slot")));
