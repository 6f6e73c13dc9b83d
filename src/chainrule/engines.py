"""Step engines for the training loop (being moved here from chainrule.scalar)."""
from __future__ import annotations

import math

import numpy as np

from .scalar import MAX_ELEMENTS, RECHECK, Program, Step, Unsupported, hyperparameters



# Iterations per call of the program when no callback asks to see each one (the gradient monitor
# looks at a block's iterations when it ends), and how often a replayed step is checked against an
# eager one (in iterations; every block that starts after RECHECK more iterations is).
BLOCK = 100


def train(model, x, y, loss_fn, optimizer, named, history, tol, max_iter, monitor, callback, eager):
    """Run fit's full-batch iterations as a Program: (iterations done, whether training ended here).

    (0, False) when the model, data or optimizer cannot be written out: nothing was done. Stops early,
    with ``done`` < max_iter and False, when the check against the eager step fails (a CompileWarning)
    or a math error needs the NumPy path; raises DivergenceError as fit does.
    """
    from .tensor import is_anomaly_enabled, is_grad_enabled, tensor_from
    from .optim import Adam, GradientDescent, Momentum
    params = [p for _, p in named]
    if is_anomaly_enabled() or not is_grad_enabled() or type(optimizer) not in (GradientDescent, Momentum, Adam) \
            or any(a.dtype != np.float64 or a.size > MAX_ELEMENTS for a in [x, y, *(p.data for p in params)]):
        return 0, False  # (before any forward pass: a large model or data set is never written out)
    xt = tensor_from(x)
    try:
        program = Program(Step(loss_fn(model(xt), y), params, x, y), optimizer, tol)
    except Unsupported:
        return 0, False
    ends = np.cumsum([p.size for p in params])
    spans = list(zip(ends - [p.size for p in params], ends))
    P = tuple(np.concatenate([p.data.ravel() for p in params]).tolist())
    X, Y, S, t = x.ravel().tolist(), y.ravel().tolist(), (0.0,) * (program.n_state * len(P)), optimizer.t
    done, since_check = 0, RECHECK
    history.engine = "python"
    light = callback is not None  # one iteration a call: records, parameters and gradients kept lightly
    pending = None  # with a callback: the optimizer's state after the last iteration, loaded when leaving

    def settle():  # the parameters are already in place (the callback may have set them since)
        if pending is not None:
            _load(optimizer, params, spans, *pending, program, values=False)

    try:
        while done < max_iter:
            if light and done:  # the callback may have set parameters: take their values again
                P = tuple(np.concatenate([p.data.ravel() for p in params]).tolist())
            checking = since_check >= RECHECK
            if checking:
                expected = eager(model, xt, y, loss_fn, params)
                expected = expected[0], np.concatenate([np.ravel(g) for g in expected[1]])
            L, V, D, Z = [], [], [], []
            before = P
            n, why, P, S, t, extra = program.run(1 if light else min(BLOCK, max_iter - done), P, X, Y, S, t,
                                                 hyperparameters(optimizer), L, V, D, Z)
            if checking and n and not (np.isclose(L[0], expected[0], rtol=1e-9, atol=1e-12)
                                       and np.allclose(D[0], expected[1], rtol=1e-9, atol=1e-12)):
                import warnings
                from .trace import CompileWarning
                from .train import outside_stacklevel
                for p, v in zip(params, _split(np.array(before), params, spans)):
                    p.data[...] = v  # the eager check ran at these values; the NumPy path goes on from them
                warnings.warn("fit(compile=True): a step written out as Python arithmetic differs from the eager "
                              "one (the model does different work per step); training goes on replaying NumPy "
                              "calls", CompileWarning, stacklevel=outside_stacklevel())
                return done, False
            since_check = 0 if checking else since_check
            since_check += n
            if n and light:
                _record_one(history, done + 1, L[0], V[0], D[0], Z[0], params, spans, program.graded)
                pending = (P, S, t, Z[0], D[0])
                optimizer.t = t  # a schedule in the callback may read it (the state arrays settle when leaving)
                if monitor:
                    monitor.observe(history, _norms_one(history, D[0], spans), done + 1)
                done += 1
            elif n:
                _extend(history, done + 1, (L, V, D, Z), params, spans)
                _load(optimizer, params, spans, P, S, t, Z[-1], D[-1], program)
                if monitor:
                    monitor.observe_block(history, _norms(D, spans), done + 1)
                done += n
            stop = bool(n and callback and callback(history))
            if why == "converged":  # as in fit's loop: convergence is said before the callback's stop
                history.stop_reason = f"every step size fell below {tol:g} at iteration {done}"
                history.converged = True
                return done, True
            if stop:
                history.stop_reason = f"stopped by the callback at iteration {done}"
                return done, True
            if why == "diverged":
                from .train import _diverged
                pending = None  # the optimizer stands as after the failed step, as in eager training
                _load(optimizer, params, spans, P, S, t, extra[2], extra[1], program)
                loss, grads, steps = extra[0], *(_split(np.array(a), params, spans) for a in extra[1:])
                _diverged(done + 1, loss, grads, steps, named, history,
                          history._best or _split(np.array(P), params, spans))
            if why == "error":  # an overflow or a log of 0 in pure Python: the NumPy path takes over here
                return done, False
        return done, False
    finally:  # also when the callback raises (Ctrl-C) or training diverges
        settle()


def _record_one(history, iteration, loss, old, grad, step, params, spans, graded):
    """One iteration into the History (and the parameters and gradients as it leaves them), cheaply."""
    if loss < history.best_loss:
        history.best_loss, history.best_iter = loss, iteration
        history._best = _split(np.array(old), params, spans)
    history.loss.append(loss)
    for trace, p, (a, b), has in zip(history.params.values(), params, spans, graded):
        if not p.shape:  # a scalar, as the blocks record it
            o, g, s = np.float64(old[a]), np.float64(grad[a]), np.float64(step[a])
        else:
            o, g, s = (np.array(r[a:b]).reshape(p.shape) for r in (old, grad, step))
        p.data[...] = o - s
        p.grad = np.array(g) if has else None
        trace.record(o, g, s)
    history.n_iter = iteration
    history.largest_step = max(abs(v) for v in step) if step else 0.0


def _norms_one(history, grad, spans):
    return {name: abs(grad[a]) if b - a == 1 else math.sqrt(sum(v * v for v in grad[a:b]))
            for name, (a, b) in zip(history.params, spans)}


def _split(flat, params, spans):
    return [flat[a:b].reshape(p.shape) for p, (a, b) in zip(params, spans)]


def _extend(history, first, records, params, spans):
    """A block of iterations into the History, as fit's ``_record`` puts one."""
    L = records[0]
    k = len(L)
    old, grad, step = (np.array(r, dtype=float).reshape(k, -1) for r in records[1:])
    best = int(np.argmin(L))
    if L[best] < history.best_loss:
        history.best_loss, history.best_iter = L[best], first + best
        history._best = [a.copy() for a in _split(old[best], params, spans)]
    history.loss.extend(L)
    for trace, p, (a, b) in zip(history.params.values(), params, spans):
        shape = (k,) + p.shape
        trace.extend(old[:, a:b].reshape(shape), grad[:, a:b].reshape(shape), step[:, a:b].reshape(shape))
    history.n_iter = first + k - 1
    history.largest_step = float(np.max(np.abs(step[-1]))) if step.size else 0.0


def _load(optimizer, params, spans, P, S, t, steps, grads, program, values=True):
    """Parameters (unless ``values`` is False), gradients and optimizer state as the program left them."""
    n_state, flat, steps, grads = program.n_state, np.array(P), np.array(steps, dtype=float), np.array(grads, dtype=float)
    for p, v, g, graded in zip(params, _split(flat, params, spans), _split(grads, params, spans), program.graded):
        if values:
            p.data[...] = v
        p.grad = g if graded else None  # as eager: no gradient for a parameter the loss does not use
    e = len(flat)
    state = {}
    if n_state == 2:  # Adam
        state = {"m": np.array(S[:e]), "v": np.array(S[e:]), "scratch": np.zeros(e)}
    elif n_state == 1 and t:  # Momentum (its velocity exists after the first step)
        state = {"v": np.array(S)}
    optimizer._load(t, steps, state)


def _norms(grads, spans):
    """Each parameter's derivative norm per iteration: (iterations, parameters)."""
    g = np.array(grads, dtype=float)
    return np.stack([np.abs(g[:, a]) if b - a == 1 else np.sqrt(np.sum(g[:, a:b] ** 2, axis=1))
                     for a, b in spans], axis=1)
