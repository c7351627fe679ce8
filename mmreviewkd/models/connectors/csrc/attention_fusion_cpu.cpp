// Copyright (c) mmreviewkd contributors. All rights reserved.
//
// CPU kernels of the ABF attention fusion (see attention_fusion.py):
//
//   logits = conv1x1(x, w[:, :M]) + up(conv1x1(r, w[:, M:])) + bias
//   att    = sigmoid(logits)                      (N, 2, H, W)
//   fused  = x * att[:, 0] + up(r) * att[:, 1]    (N, M, H, W)
//
// with `up` the nearest resize of r (N, M, h, w) by the integer factors
// H / h, W / w. All tensors are channels-last (NHWC in memory), the layout
// the ABF chain runs in on CPU: every pixel's M channels are contiguous, so
// the attention logits are dot products and the fusion is one pass over the
// pixels. Written op by op, forward and backward each pass over the
// full-size tensors about a dozen times; here the forward reads x once and
// writes the result once, the backward reads the gradient and x once and
// writes the input gradient once. Work is split over blocks of residual rows
// of one sample, so every residual gradient row has one owner; the attention
// conv's weight and bias gradients are summed per block in double and
// reduced afterwards, so results do not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// About this many output pixels per work unit.
constexpr int64_t kPixelsPerUnit = 1024;

template <typename T>
inline T sigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));
}

template <typename T>
inline T dot(const T* a, const T* b, int64_t m) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < m; ++c) s += a[c] * b[c];
  return s;
}

struct Geometry {
  int64_t n, m, H, W, h, wl, sh, sw;
  int64_t rows_per_unit;  // residual rows per work unit
  int64_t units_per_sample;

  Geometry(const at::Tensor& x, const at::Tensor& r)
      : n(x.size(0)), m(x.size(1)), H(x.size(2)), W(x.size(3)),
        h(r.size(2)), wl(r.size(3)) {
    sh = H / h;
    sw = W / wl;
    rows_per_unit = std::max<int64_t>(
        1, std::min<int64_t>(h, kPixelsPerUnit / std::max<int64_t>(1, sh * W)));
    units_per_sample = (h + rows_per_unit - 1) / rows_per_unit;
  }
  int64_t units() const { return n * units_per_sample; }
};

// Work unit u: residual rows [y0, y0 + rows) of sample b.
struct Unit {
  int64_t b, y0, rows;
  Unit(const Geometry& G, int64_t u)
      : b(u / G.units_per_sample),
        y0((u % G.units_per_sample) * G.rows_per_unit),
        rows(std::min(G.rows_per_unit, G.h - y0)) {}
};

// Calls f(p, q) for every output pixel of a work unit: p its flat index in
// (n, H, W), q the index of its residual pixel within the unit's rows.
template <typename F>
inline void for_each_pixel(const Geometry& G, const Unit& U, const F& f) {
  for (int64_t i = U.y0 * G.sh; i < (U.y0 + U.rows) * G.sh; ++i) {
    const int64_t il = i / G.sh - U.y0;
    for (int64_t px = 0; px < G.W; ++px)
      f((U.b * G.H + i) * G.W + px, il * G.wl + px / G.sw);
  }
}

// x, out: (n, H, W, m); r: (n, h, wl, m); att: (n, H, W, 2) in memory.
template <typename T>
void forward_kernel(const Geometry& G, const T* x, const T* r, const T* w,
                    const T* bias, T* out, T* att) {
  const int64_t m = G.m, wl = G.wl;
  const T *wx0 = w, *wr0 = w + m, *wx1 = w + 2 * m, *wr1 = w + 3 * m;
  const T b0 = bias ? bias[0] : T(0), b1 = bias ? bias[1] : T(0);
  at::parallel_for(0, G.units(), 1, [&](int64_t begin, int64_t end) {
    std::vector<T> rl(2 * G.rows_per_unit * wl);
    for (int64_t u = begin; u < end; ++u) {
      const Unit U(G, u);
      // the residual's half of the 1x1 conv at its own resolution
      const T* rb = r + ((U.b * G.h + U.y0) * wl) * m;
      for (int64_t q = 0; q < U.rows * wl; ++q) {
        rl[2 * q] = b0 + dot(wr0, rb + q * m, m);
        rl[2 * q + 1] = b1 + dot(wr1, rb + q * m, m);
      }
      for_each_pixel(G, U, [&](int64_t p, int64_t q) {
        const T* xp = x + p * m;
        const T* rp = rb + q * m;
        const T a0 = sigmoid(rl[2 * q] + dot(wx0, xp, m));
        const T a1 = sigmoid(rl[2 * q + 1] + dot(wx1, xp, m));
        att[2 * p] = a0;
        att[2 * p + 1] = a1;
        T* op = out + p * m;
#pragma omp simd
        for (int64_t c = 0; c < m; ++c) op[c] = xp[c] * a0 + rp[c] * a1;
      });
    }
  });
}

// gpart: (units, 4 * m + 2) doubles, zero-initialised; per work unit:
// [d wx0 (m), d wr0 (m), d wx1 (m), d wr1 (m), d b0, d b1]
template <typename T>
void backward_kernel(const Geometry& G, const T* g, const T* x, const T* r,
                     const T* att, const T* w, T* gx, T* gr, double* gpart) {
  const int64_t m = G.m, wl = G.wl;
  const T *wx0 = w, *wr0 = w + m, *wx1 = w + 2 * m, *wr1 = w + 3 * m;
  at::parallel_for(0, G.units(), 1, [&](int64_t begin, int64_t end) {
    std::vector<T> glr(2 * G.rows_per_unit * wl);
    std::vector<T> acc(2 * m);  // this unit's sums: d wx0, d wx1
    T *ax0 = acc.data(), *ax1 = ax0 + m;
    for (int64_t u = begin; u < end; ++u) {
      const Unit U(G, u);
      const int64_t l = U.rows * wl;
      double* part = gpart + u * (4 * m + 2);
      const T* rb = r + ((U.b * G.h + U.y0) * wl) * m;
      T* grb = gr + ((U.b * G.h + U.y0) * wl) * m;
      std::fill(glr.begin(), glr.begin() + 2 * l, T(0));
      std::fill(grb, grb + l * m, T(0));
      std::fill(acc.begin(), acc.end(), T(0));
      double sb0 = 0, sb1 = 0;
      for_each_pixel(G, U, [&](int64_t p, int64_t q) {
        const T* gp = g + p * m;
        const T* xp = x + p * m;
        const T* rp = rb + q * m;
        const T a0 = att[2 * p], a1 = att[2 * p + 1];
        // gradients of the logits: channel sums through the sigmoid
        const T l0 = dot(gp, xp, m) * a0 * (T(1) - a0);
        const T l1 = dot(gp, rp, m) * a1 * (T(1) - a1);
        sb0 += l0;
        sb1 += l1;
        glr[2 * q] += l0;
        glr[2 * q + 1] += l1;
        T* gxp = gx + p * m;
        T* grp = grb + q * m;
#pragma omp simd
        for (int64_t c = 0; c < m; ++c) {
          ax0[c] += l0 * xp[c];
          ax1[c] += l1 * xp[c];
          grp[c] += gp[c] * a1;  // the adjoint of the nearest upsampling
          gxp[c] = gp[c] * a0 + l0 * wx0[c] + l1 * wx1[c];
        }
      });
      // the residual's half of the attention conv (at its resolution)
      for (int64_t q = 0; q < l; ++q) {
        const T l0 = glr[2 * q], l1 = glr[2 * q + 1];
        const T* rp = rb + q * m;
        T* grp = grb + q * m;
        for (int64_t c = 0; c < m; ++c) {
          grp[c] += l0 * wr0[c] + l1 * wr1[c];
          part[m + c] += static_cast<double>(l0 * rp[c]);
          part[3 * m + c] += static_cast<double>(l1 * rp[c]);
        }
      }
      for (int64_t c = 0; c < m; ++c) {
        part[c] += ax0[c];
        part[2 * m + c] += ax1[c];
      }
      part[4 * m] += sb0;
      part[4 * m + 1] += sb1;
    }
  });
}

void check_inputs(const at::Tensor& x, const at::Tensor& r,
                  const at::Tensor& w) {
  TORCH_CHECK(x.device().is_cpu() && r.device().is_cpu() &&
                  w.device().is_cpu(),
              "attention_fusion_cpu: CPU tensors expected");
  TORCH_CHECK(x.dim() == 4 && r.dim() == 4 && x.size(0) == r.size(0) &&
                  x.size(1) == r.size(1),
              "attention_fusion_cpu: x (N, M, H, W) and residual "
              "(N, M, h, w) expected");
  TORCH_CHECK(r.size(2) > 0 && r.size(3) > 0 && x.size(2) % r.size(2) == 0 &&
                  x.size(3) % r.size(3) == 0,
              "attention_fusion_cpu: the residual's size must divide x's");
  TORCH_CHECK(w.numel() == 4 * x.size(1),
              "attention_fusion_cpu: weight (2, 2M, 1, 1) expected");
  TORCH_CHECK(x.scalar_type() == r.scalar_type() &&
                  x.scalar_type() == w.scalar_type(),
              "attention_fusion_cpu: dtypes differ");
}

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

at::Tensor contiguous_or_undefined(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

constexpr auto kCL = at::MemoryFormat::ChannelsLast;

std::vector<at::Tensor> fusion_forward(
    const at::Tensor& x_, const at::Tensor& r_, const at::Tensor& w_,
    const c10::optional<at::Tensor>& b_) {
  check_inputs(x_, r_, w_);
  const auto x = x_.contiguous(kCL), r = r_.contiguous(kCL);
  const auto w = w_.contiguous();
  const auto b = contiguous_or_undefined(b_);
  const Geometry G(x, r);
  auto out = at::empty_like(x);
  auto att = at::empty({G.n, 2, G.H, G.W}, x.options().memory_format(kCL));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "attention_fusion_forward", [&] {
    forward_kernel<scalar_t>(
        G, x.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(),
        w.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(b),
        out.data_ptr<scalar_t>(), att.data_ptr<scalar_t>());
  });
  return {out, att};
}

std::vector<at::Tensor> fusion_backward(
    const at::Tensor& g_, const at::Tensor& x_, const at::Tensor& r_,
    const at::Tensor& att_, const at::Tensor& w_) {
  check_inputs(x_, r_, w_);
  TORCH_CHECK(g_.sizes() == x_.sizes(), "attention_fusion_cpu: grad shape");
  const auto g = g_.contiguous(kCL), x = x_.contiguous(kCL);
  const auto r = r_.contiguous(kCL), att = att_.contiguous(kCL);
  const auto w = w_.contiguous();
  const Geometry G(x, r);
  const int64_t m = G.m;
  auto gx = at::empty_like(x);
  auto gr = at::empty_like(r);
  auto part =
      at::zeros({G.units(), 4 * m + 2}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "attention_fusion_backward", [&] {
    backward_kernel<scalar_t>(
        G, g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
        r.data_ptr<scalar_t>(), att.data_ptr<scalar_t>(),
        w.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(),
        gr.data_ptr<scalar_t>(), part.data_ptr<double>());
  });
  auto sums = part.sum(0).to(x.scalar_type());
  return {gx,
          gr,
          sums.narrow(0, 0, 4 * m).view({2, 2 * m, 1, 1}),
          sums.narrow(0, 4 * m, 2)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(mmreviewkd_cpu, lib) {
  lib.def("attention_fusion_forward(Tensor x, Tensor residual, Tensor weight, "
          "Tensor? bias) -> Tensor[]");
  lib.def("attention_fusion_backward(Tensor grad, Tensor x, Tensor residual, "
          "Tensor att, Tensor weight) -> Tensor[]");
  lib.impl("attention_fusion_forward", c10::DispatchKey::CPU, &fusion_forward);
  lib.impl("attention_fusion_backward", c10::DispatchKey::CPU,
           &fusion_backward);
}
