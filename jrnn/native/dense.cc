// jrnn native CPU weight gradients of the dense recurrences' backward passes (XLA FFI
// custom call), shared by LSTM, GRU and SimpleRNN (jrnn/native/__init__.py: _product_grads):
//
//   jrnn_dense_weight_grad:  dw = sum_i a_iᵀ dz_i  (C, G)   db = sum_i dz_i  (G)
//
// over the N P rows i = (n, p) of a (N, P, C) and dz (N, P, G), float32 or bfloat16
// (dw and db are float32 either way; a may hold
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
//
// bfloat16 (AVX-512 build) runs on AMX where AmxEnabled() (DenseWeightGradAmx, below);
// elsewhere (JRNN_NATIVE_AMX=0 at run time) it widens both operands to float32 while
// packing them and runs the float32 tiles: the products of bfloat16 values are exact in
// float32, so the two differ only in how the float32 sums round.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "common.h"

#if defined(JRNN_X86)
namespace jrnn {
namespace JRNN_ISA {
namespace {

// Rows per block (tried 32, 64, 128, 256, 512: 256 was fastest). An AVX2 K loop reads 16 KiB
// of the dz panel and 6 KiB of a's micro-panel: both stay in L1.
constexpr int64_t kBlock = 256;

template <typename T>
struct DenseGradArgs {
  int64_t N, P, C, G;
  const T *a, *dz, *first;
  bool shifted, reverse;
  int64_t lda;  // a's row stride (slots C)
  // Row i of the left operand (see the top of the file).
  const T* Row(int64_t i) const {
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
template <typename T>
T* Aligned64(T* p) {
  const auto at = (reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63};
  return reinterpret_cast<T*>(at);
}

template <typename T>
JRNN_TARGET void PackBlock(const DenseGradArgs<T>& a, int64_t k0, int64_t K, int64_t p0,
                           int64_t p1, float* pack, float* db) {
  for (int64_t j = p0; j < p1; ++j) {
    Mask m[4];
    UnitMasks(a.G, j, m);
    float* panel = pack + (j - p0) * kBlock * 64;
    Vec sum[4] = {Zero(), Zero(), Zero(), Zero()};
    for (int64_t k = 0; k < K; ++k) {
      const T* row = a.dz + (k0 + k) * a.G + 64 * j;
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

// Rows k0 .. k0 + K - 1 of a's columns m_lo .. m_hi - 1 into (K, kMaxRows) micro-panels,
// kBlock kMaxRows floats apart (zero-padded past m_hi in the last), as float32.
template <typename T>
JRNN_TARGET void PackLeft(const DenseGradArgs<T>& a, int64_t k0, int64_t K, int64_t m_lo,
                          int64_t m_hi, float* apack) {
  static_assert(kMaxRows <= 16, "one masked vector per micro-panel row");
  for (int64_t k = 0; k < K; ++k) {
    const T* src = a.Row(k0 + k);
    float* dst = apack + k * kMaxRows;
    for (int64_t m0 = m_lo; m0 < m_hi; m0 += kMaxRows, dst += kBlock * kMaxRows) {
      const Mask in = static_cast<Mask>((1u << std::min<int64_t>(kMaxRows, m_hi - m0)) - 1);
      Store(static_cast<Mask>((1u << kMaxRows) - 1), dst, Load(in, src + m0));
    }
  }
}

// Zeroes dw and db, then shares them out over XLA's threads: share(p0, p1, t0, t1, sum_db)
// owns dw's column panels p0 .. p1 - 1 (64 columns each) in its tiles t0 .. t1 - 1 (of
// tile_rows rows each), and db's columns of those panels when sum_db. The panels are
// split first; the tiles only when there are more threads than panels. Every entry has
// one owner, so the sums do not depend on the thread count.
template <typename T, typename Share>
void ShareOut(ffi::ThreadPool& pool, const DenseGradArgs<T>& a, int64_t tile_rows, float* dw,
              float* db, const Share& share) {
  const int64_t panels = (a.G + 63) / 64, tiles = (a.C + tile_rows - 1) / tile_rows;
  const int64_t threads = PoolThreads(pool);
  const int64_t col_groups = std::min(panels, threads);
  const int64_t row_groups = std::max<int64_t>(1, std::min(tiles, threads / col_groups));
  std::fill(dw, dw + a.C * a.G, 0.0f);
  std::fill(db, db + a.G, 0.0f);
  if (a.C == 0 || a.G == 0 || a.N * a.P == 0) return;
  const auto chunk = [&](int64_t g, const std::atomic<int64_t>&) {
    const int64_t cg = g / row_groups, rg = g % row_groups;
    share(panels * cg / col_groups, panels * (cg + 1) / col_groups, tiles * rg / row_groups,
          tiles * (rg + 1) / row_groups, rg == 0);
  };
  ParallelChunks(pool, threads, col_groups * row_groups, chunk);
}

template <typename T>
void DenseWeightGrad(ffi::ThreadPool& pool, const DenseGradArgs<T>& a, float* dw, float* db) {
  const int64_t rows = a.N * a.P;
  ShareOut(pool, a, kMaxRows, dw, db, [&](int64_t p0, int64_t p1, int64_t t0, int64_t t1,
                                          bool sum_db) {
    const int64_t m_lo = kMaxRows * t0, m_hi = std::min(a.C, kMaxRows * t1);
    std::vector<float> apack(((m_hi - m_lo + kMaxRows - 1) / kMaxRows) * kBlock * kMaxRows);
    std::vector<float> pack((p1 - p0) * kBlock * 64);
    for (int64_t k0 = 0; k0 < rows; k0 += kBlock) {
      const int64_t K = std::min(kBlock, rows - k0);
      PackLeft(a, k0, K, m_lo, m_hi, apack.data());
      PackBlock(a, k0, K, p0, p1, pack.data(), sum_db ? db : nullptr);
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

#if defined(JRNN_AMX)
// bfloat16 on AMX: dw's blocks of 16 rows x 64 columns are the four accumulator tiles
// tmm0-3 (as in AmxAccumulate), each tdpbf16ps adding the products of 32 rows i. Per
// block of kAmxBlock rows, each thread packs
// * its panels of dz as pair-rows (rows 2kk and 2kk + 1 interleaved per column: a
//   tdpbf16ps right operand, PackedPanel's bfloat16 layout), adding them to db in row
//   order;
// * its tiles of 16 columns of a, transposed: one tile row per column, holding the block's
//   rows as pairs (one 32-bit lane holds rows 2kk and 2kk + 1 of one column).
// Then, panel by panel (a panel's 32 KiB pack stays in L1), every tile's products are
// added to its float32 sums, which the thread keeps between blocks ((panels x tiles)
// blocks of 16 x 64; the first block starts from zero tiles, the last stores to dw).
// Rows past the end, columns past C and columns past G are zeros in the packs. Each dw
// and db entry has one owner thread and is summed block by block in row order: the same
// result whatever the thread count.

// Rows of the sum per block, a multiple of 32 (tried 128, 256, 512: 256 was fastest; at
// 512 a panel's pack no longer fits L1).
constexpr int64_t kAmxBlock = 256;

// The 32-bit lanes (row0[c], row1[c]) for the 16 columns c of m (a row that is null or a
// column outside m reads zero): a pair-row of a tdpbf16ps operand.
JRNN_TARGET inline __m512i RowPair(Mask m, const bf16* row0, const bf16* row1) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i lo = row0 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row0)) : zero;
  const __m512i hi = row1 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row1)) : zero;
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

// v[i][c] -> v[c][i]: a 16 x 16 transpose of 32-bit lanes (pairs of lanes, then pairs of
// 64-bit lanes, then 128-bit quarters).
JRNN_TARGET inline void Transpose16(__m512i (&v)[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {  // quarter q of t[2i], t[2i+1]: rows 2i, 2i+1 of lanes 4q..4q+3
    t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // quarter q of v[4i + j]: rows 4i .. 4i+3 of lane 4q + j
    v[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    v[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    v[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    v[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int i = 0; i < 16; ++i) t[i] = v[i];
  for (int j = 0; j < 4; ++j) {  // lane 4q + j: quarter q of t[j], t[4+j], t[8+j], t[12+j]
    const __m512i a = _mm512_shuffle_i32x4(t[j], t[4 + j], 0x44);  // quarters 0, 1 of each
    const __m512i b = _mm512_shuffle_i32x4(t[j], t[4 + j], 0xEE);  // quarters 2, 3
    const __m512i c = _mm512_shuffle_i32x4(t[8 + j], t[12 + j], 0x44);
    const __m512i d = _mm512_shuffle_i32x4(t[8 + j], t[12 + j], 0xEE);
    v[j] = _mm512_shuffle_i32x4(a, c, 0x88);
    v[4 + j] = _mm512_shuffle_i32x4(a, c, 0xDD);
    v[8 + j] = _mm512_shuffle_i32x4(b, d, 0x88);
    v[12 + j] = _mm512_shuffle_i32x4(b, d, 0xDD);
  }
}

// tmm0-3 = 0.
inline void ZeroSums() {
  __asm__ volatile("tilezero %%tmm0" ::);
  __asm__ volatile("tilezero %%tmm1" ::);
  __asm__ volatile("tilezero %%tmm2" ::);
  __asm__ volatile("tilezero %%tmm3" ::);
}

// tmm0-3, the sums of dw's rows 16 t .. 16 t + 15 and columns 64 p .. 64 p + 63, into dw:
// straight from the tiles where the block lies inside dw, else through a copy.
JRNN_TARGET inline void StoreDw(const DenseGradArgs<bf16>& a, int64_t p, int64_t t, float* dw) {
  float* out = dw + 16 * t * a.G + 64 * p;
  if (16 * t + 16 <= a.C && 64 * p + 64 <= a.G) {
    const int64_t stride = a.G * static_cast<int64_t>(sizeof(float));
    TileStore<0>(out, stride);
    TileStore<1>(out + 16, stride);
    TileStore<2>(out + 32, stride);
    TileStore<3>(out + 48, stride);
    return;
  }
  alignas(64) float block[kAmxRows][64];
  StoreSums(block);
  Mask m[4];
  UnitMasks(a.G, p, m);
  for (int64_t r = 0; r < 16 && 16 * t + r < a.C; ++r) {
    for (int q = 0; q < 4; ++q) Store(m[q], out + r * a.G + 16 * q, LoadU(&block[r][16 * q]));
  }
}

// One thread's share: panels p0 .. p0 + np - 1, tiles t0 .. t0 + nt - 1 (and db's columns of
// those panels when sum_db).
JRNN_TARGET void DenseAmxShare(const DenseGradArgs<bf16>& a, int64_t p0, int64_t np, int64_t t0,
                               int64_t nt, bool sum_db, float* dw, float* db) {
  constexpr int64_t kPairs = kAmxBlock / 2;
  const int64_t rows = a.N * a.P;
  AmxSession session;
  // at: tile t's row r (column 16 (t0 + t) + r of a) at (16 t + r) kPairs; pack: panel
  // j's pair-row kk at (j kPairs + kk) 64; sums: panel j's tile t at (j nt + t) 1024.
  std::vector<uint32_t> at_buffer(nt * 16 * kPairs + 16), pack_buffer(np * kPairs * 64 + 16);
  // Blocks of equal size (multiples of 32 rows, at most kAmxBlock): a short last block
  // would pay the sums' round trip for few products.
  const int64_t blocks = (rows + kAmxBlock - 1) / kAmxBlock;
  const int64_t block_rows = std::min(kAmxBlock, ((rows + blocks - 1) / blocks + 31) / 32 * 32);
  // Partial sums between blocks: only where there is more than one block, and written
  // before they are read (the first block starts from zero tiles).
  std::unique_ptr<float[]> sums_buffer(new float[blocks > 1 ? np * nt * 1024 + 16 : 0]);
  std::vector<float> db_buffer(np * 64 + 16, 0.0f);
  uint32_t* at = Aligned64(at_buffer.data());
  uint32_t* pack = Aligned64(pack_buffer.data());
  float* sums = Aligned64(sums_buffer.get());
  float* dbs = Aligned64(db_buffer.data());
  for (int64_t k0 = 0; k0 < rows; k0 += block_rows) {
    const int64_t K = std::min(block_rows, rows - k0), steps = (K + 31) / 32;
    const bool first = k0 == 0, last = k0 + K == rows;
    for (int64_t kk0 = 0; kk0 < 16 * steps; kk0 += 16) {  // 16 pairs of rows at a time
      const bf16* pairs[16][2];
      for (int i = 0; i < 16; ++i) {
        for (int h = 0; h < 2; ++h) {
          const int64_t k = 2 * (kk0 + i) + h;
          pairs[i][h] = k < K ? a.Row(k0 + k) : nullptr;
        }
      }
      for (int64_t t = 0; t < nt; ++t) {
        const int64_t c0 = 16 * (t0 + t);
        const Mask m = static_cast<Mask>((1u << std::min<int64_t>(16, a.C - c0)) - 1);
        __m512i v[16];
        for (int i = 0; i < 16; ++i) {
          v[i] = RowPair(m, pairs[i][0] ? pairs[i][0] + c0 : nullptr,
                         pairs[i][1] ? pairs[i][1] + c0 : nullptr);
        }
        Transpose16(v);
        for (int c = 0; c < 16; ++c) _mm512_store_si512(at + (16 * t + c) * kPairs + kk0, v[c]);
      }
    }
    for (int64_t j = 0; j < np; ++j) {
      Mask m[4];
      UnitMasks(a.G, p0 + j, m);
      for (int64_t kk = 0; kk < 16 * steps; ++kk) {
        const int64_t k = k0 + 2 * kk;
        const bf16* row0 = k < k0 + K ? a.dz + k * a.G + 64 * (p0 + j) : nullptr;
        const bf16* row1 = k + 1 < k0 + K ? row0 + a.G : nullptr;
        for (int q = 0; q < 4; ++q) {
          const __m512i pair = RowPair(m[q], row0 ? row0 + 16 * q : nullptr,
                                       row1 ? row1 + 16 * q : nullptr);
          _mm512_store_si512(pack + (j * kPairs + kk) * 64 + 16 * q, pair);
          if (!sum_db) continue;
          float* s = dbs + 64 * j + 16 * q;  // row 2kk, then row 2kk + 1
          Vec sum = Add(LoadU(s), _mm512_castsi512_ps(_mm512_slli_epi32(pair, 16)));
          sum = Add(sum, _mm512_castsi512_ps(_mm512_and_si512(pair, _mm512_set1_epi32(-65536))));
          StoreU(s, sum);
        }
      }
    }
    AmxConfigure(kAmxRows);
    for (int64_t j = 0; j < np; ++j) {
      const bf16* panel = reinterpret_cast<const bf16*>(pack + j * kPairs * 64);
      for (int64_t t = 0; t < nt; ++t) {
        const auto partial = [&]() -> float(&)[kAmxRows][64] {  // only with blocks > 1
          return *reinterpret_cast<float(*)[kAmxRows][64]>(sums + (j * nt + t) * 1024);
        };
        if (first) {
          ZeroSums();
        } else {
          LoadSums(partial());
        }
        for (int64_t s = 0; s < steps; ++s) {
          TileLoad<4>(at + 16 * t * kPairs + 16 * s, 4 * kPairs);
          TileDots<0, 4>(panel + 32 * 64 * s, 256);
        }
        if (last) {
          StoreDw(a, p0 + j, t0 + t, dw);
        } else {
          StoreSums(partial());
        }
      }
    }
  }
  for (int64_t j = 0; j < np; ++j) {
    if (!sum_db) continue;
    Mask m[4];
    UnitMasks(a.G, p0 + j, m);
    for (int q = 0; q < 4; ++q) {
      Store(m[q], db + 64 * (p0 + j) + 16 * q, LoadU(dbs + 64 * j + 16 * q));
    }
  }
}

void DenseWeightGradAmx(ffi::ThreadPool& pool, const DenseGradArgs<bf16>& a, float* dw,
                        float* db) {
  ShareOut(pool, a, 16, dw, db, [&](int64_t p0, int64_t p1, int64_t t0, int64_t t1, bool sum_db) {
    DenseAmxShare(a, p0, p1 - p0, t0, t1 - t0, sum_db, dw, db);
  });
}
#endif  // JRNN_AMX

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
  const ffi::DataType f32 = ffi::DataType::F32, in = a.element_type();
  if (in != f32 && in != ffi::DataType::BF16) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jrnn native dense weight gradient: a must be float32 or bfloat16");
  }
  JRNN_CHECK(CheckTypes({{"dz", dz.element_type(), in},
                         {"first", first.element_type(), in},
                         {"dw", dw->element_type(), f32},
                         {"db", db->element_type(), f32}}));
  if (shifted) JRNN_CHECK(CheckDims("first", first.dimensions(), {zd[0], C}));
  JRNN_CHECK(CheckDims("dw", dw->dimensions(), {C, zd[2]}));
  JRNN_CHECK(CheckDims("db", db->dimensions(), {zd[2]}));
  const auto run = [&](auto element) {
    using T = decltype(element);
    const DenseGradArgs<T> args{zd[0], zd[1], C, zd[2], Data<T>(a) + slot * C, Data<T>(dz),
                                Data<T>(first), shifted, reverse, slots * C};
#if defined(JRNN_AMX)
    if constexpr (std::is_same_v<T, bf16>) {
      if (AmxEnabled()) return DenseWeightGradAmx(pool, args, Data<float>(dw), Data<float>(db));
    }
#endif
    DenseWeightGrad(pool, args, Data<float>(dw), Data<float>(db));
  };
  if (in == f32) {
    run(float{});
  } else {
#if defined(JRNN_AVX2)
    return ffi::Error(ffi::ErrorCode::kUnimplemented,
                      "jrnn native dense weight gradient: bfloat16 needs the AVX-512 build");
#else
    run(bf16{});
#endif
  }
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
