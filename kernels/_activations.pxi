# Branch-free sigmoid and tanh for the fused recurrent gate kernels (textually included).
# Copied from kernels/lstm/cython_impl.pyx, which can include this file instead once its
# owner touches it again.
#
# float: exp and expm1 of x <= 0 by Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a degree-7
# Taylor polynomial q ~ expm1(r), 2**n from the exponent bits; branch-free so that gcc can
# vectorise the gate loops (scalar libm calls cost ~40 ns per element). expm1 keeps tanh
# accurate near 0. x < -87 gives exp 0 / expm1 -1; NaN stays NaN. double uses libm.
from libc.math cimport exp, fabs, fabsf, floorf, tanh
from libc.stdint cimport int32_t

ctypedef fused floating:
    float
    double


cdef union _bits:
    float f
    int32_t i


cdef inline float _q32(float x, float* p2) noexcept nogil:
    cdef float lim = -87.0
    cdef float xc = x if x > lim else lim
    cdef float n = floorf(xc * <float>1.4426950408889634 + <float>0.5)
    cdef float r, p
    cdef _bits two_n
    if n > 0:
        n = 0
    r = xc - n * <float>0.693145751953125 - n * <float>1.4286068203094172e-06
    two_n.i = (<int32_t>n + 127) << 23
    p2[0] = two_n.f
    p = <float>0.0013888889 + r * <float>0.00019841270
    p = <float>0.041666668 + r * (<float>0.008333334 + r * p)
    return r * (<float>1.0 + r * (<float>0.5 + r * (<float>0.16666667 + r * p)))


cdef inline floating _sig(floating z) noexcept nogil:
    cdef floating e, s
    cdef float p2, q, a
    if floating is float:
        a = -fabsf(z)
        q = _q32(a, &p2)
        e = p2 + p2 * q
        e = e if a >= <float>-87.0 else <float>0.0
    else:
        e = exp(-fabs(z))
    s = 1 / (1 + e)
    s = s if z >= 0 else e * s
    return s if z == z else z


cdef inline floating _tanh(floating z) noexcept nogil:
    cdef float p2, q, a, em, t
    if floating is float:
        a = <float>-2.0 * fabsf(z)
        q = _q32(a, &p2)
        em = p2 * q + (p2 - 1)
        em = em if a >= <float>-87.0 else <float>-1.0
        t = -em / (<float>2.0 + em)
        t = t if z >= 0 else -t
        return t if z == z else z
    else:
        return tanh(z)
