"""Upsampling / interpolation kernels (NCHW): nearest and bilinear, forward and backward.

The functional layer (:func:`fastnn.functional.interpolate`) computes torch's source indices
and weights once per call (they depend only on the sizes, the scale and ``align_corners``);
the kernels gather and scatter with them. Shared signature of every backend (arrays
C-contiguous, one float dtype, index arrays int64, weights in the input's dtype)::

    nearest_forward(x, out, hidx, widx)
        out[n, c, i, j] = x[n, c, hidx[i], widx[j]]; x (N, C, H, W), out (N, C, OH, OW)
    nearest_backward(grad_out, grad_x, hidx, widx)       grad_x zeroed by the caller
    bilinear_forward(x, out, h0, h1, lh, w0, w1, lw)
        out[n, c, i, j] = (1 - lh[i]) * ((1 - lw[j]) * x[h0[i], w0[j]] + lw[j] * x[h0[i], w1[j]])
                          + lh[i] * ((1 - lw[j]) * x[h1[i], w0[j]] + lw[j] * x[h1[i], w1[j]])
    bilinear_backward(grad_out, grad_x, h0, h1, lh, w0, w1, lw)   grad_x zeroed by the caller

The backward kernels add each output's gradient into the input pixels it was read from; an
(image, channel) plane belongs to one thread, so no two threads write the same pixel.
"""
