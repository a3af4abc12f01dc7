"""The LSTM layer of the compiled backends: the batch split over the thread team, each thread
running its rows through every time step on its own.

The recurrence mixes nothing across the batch: row ``b`` of ``h_t`` needs only row ``b`` of
``h_{t-1}``. So one parallel region per direction, with no barrier between steps: the batch is
cut into ``nt`` contiguous parts (``nt = fastnn.get_num_threads()``, at most ``B``) and thread
``t`` runs the whole time loop for its rows, calling the BLAS GEMM itself (single-threaded,
the region runs inside :func:`~fastnn.kernels._threads.single_thread_blas`) for its rows of
the recurrent product and the backend's fused gate code for those rows. What does mix the
batch is one big GEMM each: the input projection of all ``T`` steps before the loop, and
``grad_x``, ``grad_w_ih``, ``grad_w_hh`` and ``grad_b`` after it, all four the backend's own
``linear`` kernels (the same team, split by output rows).

Who writes what: thread ``t`` alone writes its rows of ``hs``, ``cs``, ``acts`` (forward) and
of ``dz`` (the gate gradients), ``grad_h0``, ``grad_c0`` and its rows of the scratch (backward);
the big GEMMs split their outputs by rows likewise. Nothing is summed across threads, so the
result is the same bits on every run and at every thread count.

Each backend supplies::

    recurrence_forward(xg, w_hh, h0, c0, hs, cs, acts, nt)
        xg (T, B, 4H) the input projections (bias included); writes hs, cs, acts
    recurrence_backward(grad_hs, grad_hn, grad_cn, w_hh, c0, cs, acts, dz, grad_h0, grad_c0, nt)
        writes dz (T, B, 4H) the gate pre-activation gradients, grad_h0 and grad_c0
"""
from fastnn._config import get_num_threads

from .._threads import single_thread_blas
from .numpy_impl import _workspace


def layer_functions(recurrence_forward, recurrence_backward, dense):
    """``(lstm_layer_forward, lstm_layer_backward)`` around a backend's two recurrences and its
    dense ``linear_forward`` / ``linear_backward`` kernels (module ``dense``)."""

    def lstm_layer_forward(x, w_ih, w_hh, bias, h0, c0, hs, cs, acts):
        T, B, I = x.shape
        H4 = w_hh.shape[0]
        xg = _workspace("xg", (T, B, H4), x.dtype)
        dense.linear_forward(x.reshape(T * B, I), w_ih, bias, xg.reshape(T * B, H4))
        with single_thread_blas():
            recurrence_forward(xg, w_hh, h0, c0, hs, cs, acts, max(1, min(get_num_threads(), B)))

    def lstm_layer_backward(grad_hs, grad_hn, grad_cn, x, w_ih, w_hh, h0, c0, hs, cs, acts,
                            grad_x, grad_w_ih, grad_w_hh, grad_b, grad_h0, grad_c0):
        T, B, I = x.shape
        H4, H = w_hh.shape
        dz = _workspace("dz", (T, B, H4), x.dtype)
        with single_thread_blas():
            recurrence_backward(grad_hs, grad_hn, grad_cn, w_hh, c0, cs, acts, dz, grad_h0, grad_c0,
                                max(1, min(get_num_threads(), B)))
        dz2 = dz.reshape(T * B, H4)
        dense.linear_backward(dz2, x.reshape(T * B, I), w_ih, None if grad_x is None else grad_x.reshape(T * B, I),
                              grad_w_ih, grad_b)
        h_prev = _workspace("h_prev", (T, B, H), x.dtype)  # h_{t-1} of every step: h0, then hs[:-1]
        h_prev[0] = h0
        h_prev[1:] = hs[:-1]
        dense.linear_backward(dz2, h_prev.reshape(T * B, H), w_hh, None, grad_w_hh, None)

    return lstm_layer_forward, lstm_layer_backward
