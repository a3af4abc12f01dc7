"""Optimisers with torch's update rules, parameter groups and ``state_dict`` layout.

:class:`SGD`, :class:`Adam`, :class:`AdamW`, :class:`RMSprop` and :class:`Adagrad` follow the
single-tensor code of ``torch.optim`` step for step; each parameter's update is one fused
kernel call (``kernels/optim``).

Parameter groups: ``params`` is an iterable of :class:`~fastnn.nn.Parameter` or of dicts
``{"params": [...], "lr": ..., ...}``; options missing from a group take the constructor's.
``optimizer.param_groups`` is the list of group dicts (a scheduler changes ``group["lr"]``),
``add_param_group`` appends one.

``state_dict()`` has torch's layout: ``{"state": {index: {"step": 0-d float32 array,
"exp_avg": array, ...}}, "param_groups": [{..options.., "params": [index, ...]}]}`` with
parameters numbered across groups in order, so a torch optimiser's state converted with
``.numpy()`` loads with ``load_state_dict`` and fastnn's converted with ``torch.as_tensor``
loads into torch. The options ``foreach``, ``capturable``, ``differentiable`` and ``fused``
are kept in the groups for that layout only (every fastnn update is fused).
"""
import copy
import math
import numbers

import numpy as np

from .. import _dispatch as _d
from ..nn.module import Parameter

_d.register_auto({
    "optim": [(0, "numpy"), (1 << 12, "numba")],
    "optim.sgd_step": [(0, "numpy"), (1 << 14, "numba")],
})


def _nonneg(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
    return v


def _betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(
        isinstance(b, numbers.Real) and not isinstance(b, bool) and 0 <= b < 1 for b in betas
    ):
        raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
    return tuple(betas)


def _as_array(v, name):
    """A state value from a state_dict (array, number or torch tensor) as an ndarray."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    try:
        a = np.asarray(v)
    except (TypeError, ValueError):
        a = np.asarray(None)
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError(f"{name}: expected a real number or array, got {type(v).__name__}")
    return a


class Optimizer:
    """Base class: ``param_groups``, ``state``, ``zero_grad()``, ``step()``, ``add_param_group()``,
    ``state_dict()``, ``load_state_dict()``.

    Subclasses define ``_check(group)`` (validate a group's options) and
    ``_update(p, g, group, state)`` (one parameter's fused update; ``p``/``g`` are flat views).
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, (Parameter, dict)):
            params = [params]
        if isinstance(params, (set, frozenset)):
            raise TypeError("params: expected an ordered iterable of Parameters or dicts (a set has no order)")
        params = list(params)
        if not params:
            raise ValueError("params: expected a non-empty iterable of Parameters, got an empty one")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    @property
    def params(self):
        """Every parameter of every group, in order."""
        return [p for g in self.param_groups for p in g["params"]]

    def add_param_group(self, param_group):
        """Append a group ``{"params": [...], option: value, ...}``; missing options take the defaults."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"param_group: expected a dict with a 'params' key, got {type(param_group).__name__}")
        group = dict(param_group)
        ps = group["params"]
        if isinstance(ps, Parameter):
            ps = [ps]
        elif isinstance(ps, (set, frozenset)):
            raise TypeError("params: expected an ordered iterable of Parameters (a set has no order)")
        ps = list(ps)
        for i, p in enumerate(ps):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}]: expected a fastnn.nn.Parameter, got {type(p).__name__}")
        if len({id(p) for p in ps}) != len(ps):
            raise ValueError("params: a parameter appears twice in one group")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in ps):
            raise ValueError("params: some parameters appear in more than one parameter group")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        group["params"] = ps
        self._check(group)
        self.param_groups.append(group)
        self._init_group_state(group)

    def _init_group_state(self, group):
        """State created when a group is added (torch's Adagrad does this); default none."""

    def _check(self, group):  # pragma: no cover - abstract
        raise NotImplementedError

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient (to None by default, as torch 2)."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient (one fused kernel call per parameter).

        ``closure``, optional: a callable that recomputes the loss; its value is returned.
        """
        loss = closure() if closure is not None else None
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.shape != p.data.shape or p.grad.dtype != p.data.dtype:
                        raise ValueError(
                            f"params[{i}].grad: expected shape {p.data.shape} and dtype {p.data.dtype}, "
                            f"got {p.grad.shape} and {p.grad.dtype}"
                        )
                    if not (p.data.flags.c_contiguous and p.data.flags.writeable):
                        p.data = np.array(p.data, order="C")
                    g = np.ascontiguousarray(p.grad).reshape(-1)
                    if group.get("maximize"):
                        g = -g
                    self._update(p.data.reshape(-1), g, group, self.state.setdefault(p, {}), p.data.shape)
                i += 1
        return loss

    def _update(self, p, g, group, state, shape):  # pragma: no cover - abstract
        """Update the flat parameter ``p`` (of ``shape``) in place from its flat gradient ``g``."""
        raise NotImplementedError

    @staticmethod
    def _zeros(state, p, shape, *names):
        """The state arrays ``names`` (zeros of the parameter's shape when new), as flat views."""
        for n in names:
            if n not in state:
                state[n] = np.zeros(shape, dtype=p.dtype)
        return [state[n].reshape(-1) for n in names]

    @staticmethod
    def _step(state):
        """Increment the 0-d float32 ``step`` (torch keeps a float32 tensor); returns it as a float."""
        if "step" not in state:
            state["step"] = np.zeros((), dtype=np.float32)
        state["step"] += 1
        return float(state["step"])

    # -- state dict --------------------------------------------------------------------
    def state_dict(self):
        """Copies of the optimiser's state in torch's layout (see the module docstring)."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if st:
                    state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a :meth:`state_dict` (fastnn's, or torch's converted to arrays; tensors work too).

        The groups must match this optimiser's groups in number and size; their options
        replace the current ones. State arrays are copied and cast to their parameter's dtype;
        ``step`` becomes a 0-d float32 array. Raises ``KeyError``/``ValueError``/``TypeError``
        (nothing changes unless everything checks).
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise TypeError("state_dict: expected a dict with keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict: has {len(saved_groups)} parameter groups, this optimiser {len(self.param_groups)}"
            )
        id_map = {}
        new_groups = []
        for k, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
            if "params" not in sg or len(sg["params"]) != len(g["params"]):
                raise ValueError(
                    f"state_dict['param_groups'][{k}]: expected {len(g['params'])} params, "
                    f"got {len(sg.get('params', ()))}"
                )
            for idx, p in zip(sg["params"], g["params"]):
                id_map[int(idx)] = p
            ng = {key: copy.deepcopy(v) for key, v in sg.items() if key not in ("params", "param_names")}
            for key, v in self.defaults.items():
                ng.setdefault(key, v)
            ng["params"] = g["params"]
            if isinstance(ng.get("betas"), list):
                ng["betas"] = tuple(ng["betas"])
            self._check(ng)
            new_groups.append(ng)
        new_state = {}
        for idx, st in state_dict["state"].items():
            try:
                p = id_map[int(idx)]
            except (KeyError, ValueError, TypeError):
                raise KeyError(f"state_dict['state']: index {idx!r} is not a parameter of the saved groups") from None
            ns = {}
            for key, v in st.items():
                name = f"state_dict['state'][{idx!r}][{key!r}]"
                if v is None:
                    ns[key] = None
                    continue
                a = _as_array(v, name)
                if key == "step":
                    if a.size != 1:
                        raise ValueError(f"{name}: expected a number, got shape {a.shape}")
                    ns[key] = np.array(a.reshape(()), dtype=np.float32)
                else:
                    if a.shape != p.data.shape:
                        raise ValueError(f"{name}: expected shape {p.data.shape}, got {a.shape}")
                    ns[key] = np.array(a, dtype=p.data.dtype, order="C")
            new_state[p] = ns
        self.param_groups = new_groups
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


class SGD(Optimizer):
    """Stochastic gradient descent as ``torch.optim.SGD``::

        g = grad + weight_decay * p                       (-grad with maximize)
        b = g (first step) or momentum * b + (1 - dampening) * g
        g = g + momentum * b if nesterov else b
        p -= lr * g

    State per parameter: ``momentum_buffer`` (when momentum != 0).
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

    def _check(self, group):
        for k in ("lr", "momentum", "dampening", "weight_decay"):
            _nonneg(group[k], k)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov: requires momentum > 0 and dampening == 0")

    def _update(self, p, g, group, state, shape):
        momentum = group["momentum"]
        buf, first = None, False
        if momentum != 0:
            buf = state.get("momentum_buffer")
            first = buf is None
            if first:
                buf = state["momentum_buffer"] = np.empty(shape, dtype=p.dtype)
            buf = buf.reshape(-1)
        _d.kernel("optim", "sgd_step", p.size)(
            p, g, buf, group["lr"], momentum, group["dampening"], group["weight_decay"], bool(group["nesterov"]), first
        )


class Adam(Optimizer):
    """Adam as ``torch.optim.Adam``::

        g = grad + weight_decay * p            (or p *= 1 - lr * weight_decay: decoupled_weight_decay)
        m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2;  vmax = max(vmax, v) (amsgrad)
        p -= lr / (1 - b1^t) * m / (sqrt(v or vmax) / sqrt(1 - b2^t) + eps)

    State per parameter: ``step`` (0-d float32), ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq`` (amsgrad).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _check(self, group):
        for k in ("lr", "eps", "weight_decay"):
            _nonneg(group[k], k)
        group["betas"] = _betas(group["betas"])

    def _update(self, p, g, group, state, shape):
        names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
        arrays = self._zeros(state, p, shape, *names)
        t = self._step(state)
        b1, b2 = group["betas"]
        _d.kernel("optim", "adam_step", p.size)(
            p, g, arrays[0], arrays[1], arrays[2] if group["amsgrad"] else None, group["lr"], b1, b2, group["eps"],
            group["weight_decay"], bool(group["decoupled_weight_decay"]), 1 - b1**t, 1 - b2**t
        )


class AdamW(Adam):
    """AdamW as ``torch.optim.AdamW``: Adam with decoupled weight decay (default 1e-2),
    ``p *= 1 - lr * weight_decay`` before the Adam step. Same state as :class:`Adam`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import nn, optim
    >>> p = nn.Parameter(np.ones(3))
    >>> opt = optim.AdamW([p], lr=0.1)
    >>> p.grad = np.ones(3)
    >>> opt.step()
    >>> sorted(opt.state_dict()["state"][0])
    ['exp_avg', 'exp_avg_sq', 'step']
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, foreach=foreach,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop``::

        g = grad + weight_decay * p
        s = alpha s + (1 - alpha) g^2;  a = lerp(a, g, 1 - alpha) (centered)
        avg = sqrt(s - a^2 if centered else s) + eps
        b = momentum b + g / avg; p -= lr b      (momentum > 0; else p -= lr g / avg)

    State per parameter: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` (centered).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable))

    def _check(self, group):
        for k in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            _nonneg(group[k], k)

    def _update(self, p, g, group, state, shape):
        (sq,) = self._zeros(state, p, shape, "square_avg")
        buf = self._zeros(state, p, shape, "momentum_buffer")[0] if group["momentum"] > 0 else None
        ga = self._zeros(state, p, shape, "grad_avg")[0] if group["centered"] else None
        self._step(state)
        _d.kernel("optim", "rmsprop_step", p.size)(
            p, g, sq, ga, buf, group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"]
        )


class Adagrad(Optimizer):
    """Adagrad as ``torch.optim.Adagrad``::

        g = grad + weight_decay * p
        clr = lr / (1 + (step - 1) * lr_decay)
        sum += g^2;  p -= clr * g / (sqrt(sum) + eps)

    State per parameter, created with the optimiser (as torch): ``step`` and ``sum`` (filled
    with ``initial_accumulator_value``).
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, fused=fused))

    def _check(self, group):
        for k in ("lr", "lr_decay", "eps", "weight_decay", "initial_accumulator_value"):
            _nonneg(group[k], k)

    def _init_group_state(self, group):
        for p in group["params"]:
            st = self.state.setdefault(p, {})
            st.setdefault("step", np.zeros((), dtype=np.float32))
            st.setdefault("sum", np.full(p.data.shape, group["initial_accumulator_value"], dtype=p.data.dtype))

    def _update(self, p, g, group, state, shape):
        if "sum" not in state:
            state["sum"] = np.full(shape, group["initial_accumulator_value"], dtype=p.dtype)
        t = self._step(state)
        clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        _d.kernel("optim", "adagrad_step", p.size)(
            p, g, state["sum"].reshape(-1), clr, group["eps"], group["weight_decay"]
        )
