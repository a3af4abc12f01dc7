"""Reference upsampling: a loop over output pixels, each a NumPy expression over (N, C).

The readable truth the other backends are tested against.
"""


def nearest_forward(x, out, hidx, widx):
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, hidx[i], widx[j]]


def nearest_backward(grad_out, grad_x, hidx, widx):
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            grad_x[:, :, hidx[i], widx[j]] += grad_out[:, :, i, j]


def bilinear_forward(x, out, h0, h1, lh, w0, w1, lw):
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            top = (1 - lw[j]) * x[:, :, h0[i], w0[j]] + lw[j] * x[:, :, h0[i], w1[j]]
            bottom = (1 - lw[j]) * x[:, :, h1[i], w0[j]] + lw[j] * x[:, :, h1[i], w1[j]]
            out[:, :, i, j] = (1 - lh[i]) * top + lh[i] * bottom


def bilinear_backward(grad_out, grad_x, h0, h1, lh, w0, w1, lw):
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            g = grad_out[:, :, i, j]
            grad_x[:, :, h0[i], w0[j]] += (1 - lh[i]) * (1 - lw[j]) * g
            grad_x[:, :, h0[i], w1[j]] += (1 - lh[i]) * lw[j] * g
            grad_x[:, :, h1[i], w0[j]] += lh[i] * (1 - lw[j]) * g
            grad_x[:, :, h1[i], w1[j]] += lh[i] * lw[j] * g
