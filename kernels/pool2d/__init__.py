"""2-D max and average pooling kernels (NCHW), forward and backward.

Shared signature of every backend (arrays C-contiguous, one float dtype; ``kernel=(kh, kw)``,
``stride=(sh, sw)``, ``padding=(ph, pw)`` symmetric; the output size, ``ceil_mode`` included,
is resolved by the functional layer and read from ``out``/``grad_out``)::

    max_pool2d_forward(x, out, kernel, stride, padding)
    max_pool2d_backward(grad_out, x, grad_x, kernel, stride, padding)       writes all of grad_x
    avg_pool2d_forward(x, out, kernel, stride, padding, count_include_pad)
    avg_pool2d_backward(grad_out, grad_x, kernel, stride, padding, count_include_pad)   grad_x zeroed
    adaptive_avg_pool2d_forward(x, out)                 output size read from ``out``
    adaptive_avg_pool2d_backward(grad_out, grad_x)      grad_x zeroed by the caller

Window ``(oh, ow)`` covers rows ``oh*sh - ph .. + kh`` clipped to the input (padding is -inf for
max, 0 for average). Max pooling's gradient goes to the *first* maximal element of a window in
row-major order, and a NaN counts as maximal (torch's rule ``v > m or isnan(v)``). The average's
divisor is the window clipped to ``H + ph`` / ``W + pw`` (``count_include_pad``) or to the input.

The compiled backends have a fast path for the common 2x2 windows with stride 2 and no padding
(non-overlapping windows that tile the input): four compares per output, and a backward that
writes each window whole (the gradient at the first maximal element, zeros around it) instead
of zeroing ``grad_x`` first and adding into it.

Adaptive average pooling averages, for output row ``i``, input rows
``floor(i * H / OH) .. ceil((i + 1) * H / OH)`` (torch's bins; columns alike): bins may
overlap or differ in size when ``OH`` does not divide ``H``.
"""


def tiles2(x, out, kh, kw, sh, sw, ph, pw):
    """True for 2x2 windows, stride 2, no padding, all inside the input: the fast path."""
    return (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0) and 2 * out.shape[2] <= x.shape[2] \
        and 2 * out.shape[3] <= x.shape[3]


def adaptive_bins(size, out_size):
    """torch's adaptive-pooling bins: ``(start, stop)`` of each of the ``out_size`` outputs."""
    return [(i * size // out_size, -(-(i + 1) * size // out_size)) for i in range(out_size)]


def entry_points(max_forward, max_backward, avg_forward, avg_backward):
    """The four shared-signature functions of a compiled backend around its loops, which take
    the window geometry as scalars: ``(..., kh, kw, sh, sw, ph, pw[, count_include_pad])``."""

    def max_pool2d_forward(x, out, kernel, stride, padding):
        max_forward(x, out, *kernel, *stride, *padding)

    def max_pool2d_backward(grad_out, x, grad_x, kernel, stride, padding):
        max_backward(grad_out, x, grad_x, *kernel, *stride, *padding)

    def avg_pool2d_forward(x, out, kernel, stride, padding, count_include_pad):
        avg_forward(x, out, *kernel, *stride, *padding, count_include_pad)

    def avg_pool2d_backward(grad_out, grad_x, kernel, stride, padding, count_include_pad):
        avg_backward(grad_out, grad_x, *kernel, *stride, *padding, count_include_pad)

    return max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward, avg_pool2d_backward
