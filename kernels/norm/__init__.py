"""Normalisation kernels, forward and backward: batch norm (statistics per channel over the
batch and the spatial positions), layer norm (per row) and group norm (per sample and group).

Shared signature of every backend (arrays C-contiguous; ``x`` and everything shaped like it
in one float dtype; per-channel coefficients in that dtype, statistics in float64; outputs
allocated by the caller and overwritten)::

    batch_norm_stats(x, mean, var)
        x (N, C, M); mean, var (C,) float64: the mean and the *biased* variance of each
        channel over its N * M values
    batch_norm_apply(x, mean, scale, shift, out)
        out[n, c, m] = (x[n, c, m] - mean[c]) * scale[c] + shift[c]
    batch_norm_backward_reduce(grad_out, x, mean, sum_g, sum_gxc)
        mean (C,) float64; sum_g[c] = sum of grad_out over (n, m),
        sum_gxc[c] = sum of grad_out * (x - mean[c]); both (C,) float64
    batch_norm_backward_apply(grad_out, x, mean, a, b, k, grad_x)
        grad_x[n, c, m] = a[c] * grad_out + b[c] * (x - mean[c]) + k[c]

    layer_norm_forward(x, weight, bias, eps, out, mean, rstd)
        x (R, D): each row is normalised by its own mean and ``rstd = 1 / sqrt(biased
        variance + eps)`` (mean, rstd (R,) float64, written), then
        out = xhat * weight[d] + bias[d] (weight, bias (D,))
    layer_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias)
        grad_x like x; grad_weight, grad_bias (D,)
    group_norm_forward(x, weight, bias, eps, out, mean, rstd)
        x (N, G, D, M): the same per row (n, g) of D * M values (mean, rstd (N, G)), with
        per-channel weight[g, d], bias[g, d] (G, D)
    group_norm_backward(grad_out, x, weight, mean, rstd, grad_x, grad_weight, grad_bias)
        grad_weight, grad_bias (G, D)

The functional layer builds batch norm's coefficients (``scale = weight * rstd`` ...) from
the statistics, passes ones and zeros when there is no affine ``weight``/``bias``, and views
``(N, C, *)`` as ``(N, C, M)`` (batch norm) or ``(N, G, C // G, M)`` (group norm), and a
layer norm's input as ``(R, D)`` (D = the product of ``normalized_shape``).

Precision, for float32 inputs (float64 inputs compute in float64 throughout):

* float64 where the sums are long: batch norm's statistics and backward reductions (N * H * W
  values per channel), group norm's (C / G * H * W values per row), the parameter gradients
  of layer and group norm (summed over the rows, in float64 partials per chunk of rows);
* layer norm's per-row sums (mean, variance, and the backward's two row sums over the
  normalised D values): float64 in the reference, NumPy and Cython backends; the Numba
  backend sums rows of up to 4096 values in float32 SIMD lanes (each lane adds at most D / 8
  values: an error bound of (D / 8) * 2^-24 of the sum of magnitudes, 3e-5 at D = 4096 and
  typically its square root; 2-3x faster without the conversions) and longer rows in
  float64; its parameter-gradient sums go through float32 sums over blocks of 64 rows into
  the float64 chunk partials;
* the elementwise passes run in the input dtype.

Variances are sums of squared deviations from the mean, never ``E[x^2] - E[x]^2``.
"""

# the parameter gradients of layer_norm_backward and group_norm_backward: rows are cut into
# at most this many chunks of consecutive samples, each summed in its own float64 partial,
# and the partials are added in chunk order: the result does not depend on the thread count.
NCHUNK = 32


def chunks(n):
    """``(number of chunks, rows or samples per chunk)`` for the backward's partial sums."""
    per = max(1, -(-n // NCHUNK))
    return -(-n // per), per
