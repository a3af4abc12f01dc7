"""2-D convolution kernels (NCHW), forward and backward.

Shared signature of every backend (arrays C-contiguous, one float dtype, outputs allocated by
the caller; ``stride=(sh, sw)``, ``padding=(top, bottom, left, right)`` already resolved by the
functional layer, ``dilation=(dh, dw)``)::

    conv2d_forward(x, w, b, out, stride, padding, dilation, groups, relu=False)
        x (N, C, H, W), w (K, C // groups, KH, KW), b (K,) | None, out (N, K, OH, OW);
        ``relu``: out = relu(conv + bias), fused
    conv2d_backward(grad_out, x, w, grad_x, grad_w, grad_b, stride, padding, dilation, groups, y=None)
        grad_out (N, K, OH, OW); grad_x (N, C, H, W) | None (not computed), grad_w like w | None,
        grad_b (K,) | None; ``y`` (N, K, OH, OW) | None: the output of a fused-ReLU forward,
        grad_out then being the gradient of that ReLU's output

with ``OH = (H + top + bottom - dh * (KH - 1) - 1) // sh + 1`` (``OW`` alike). The kernels
overwrite their outputs (no accumulation).

Strategies
----------
* ``reference``: the seed's loop over output positions, generalised;
* ``numpy``: im2col with ``sliding_window_view`` per batch chunk and one ``tensordot``/GEMM
  per group;
* ``numba`` / ``cython``: a *direct* parallel kernel (narrow groups, e.g. depthwise) and an
  *im2col/col2im* strategy: one parallel region, each thread unrolling its images and calling
  single-threaded BLAS GEMMs itself (``_gemm.py``; everything else). :func:`choose_strategy`
  is the one rule both backends use.
"""

# the NumPy backend's im2col buffers are built per batch chunk of at most this many bytes
COL_BYTES = 8 << 20


def choose_strategy(c_per_group, kh, kw, k_per_group):
    """``"direct"`` or ``"im2col"`` for one convolution (the rule of the Numba and Cython backends).

    im2col + BLAS won on every dense shape measured, even C=1 with a 5x5 kernel (GEMM inner
    dimension 25). The direct loop wins for narrow groups, where im2col would run one tiny GEMM
    per group from Python. Measured (Cython, float32, forward + backward, 2 busy cores):

    ==========================================  ========  ========
    shape                                       direct    im2col
    ==========================================  ========  ========
    N=32 C=1 28x28 K=32 5x5 pad 2 (conv_a)      38.3 ms   5.8 ms
    N=32 C=32 14x14 K=32 3x3 depthwise          5.4 ms    10.1 ms
    N=32 C=32 14x14 K=64 3x3 pad 1 (conv_b)     333 ms    18.1 ms
    ==========================================  ========  ========

    Hence: direct below 8 output channels per group (depthwise and near-depthwise) and for
    GEMM inner dimensions below 4 (a 1x1 kernel over 1-3 channels per group), else im2col.
    """
    return "direct" if k_per_group < 8 or c_per_group * kh * kw < 4 else "im2col"


def choose_chunk(n, ckk, p, itemsize):
    """Images per im2col chunk (the NumPy backend's) so that its ``(ckk, chunk * p)`` matrix
    stays under ``COL_BYTES`` (at least one image)."""
    per_image = max(ckk * p * itemsize, 1)
    return max(1, min(n, COL_BYTES // per_image))
