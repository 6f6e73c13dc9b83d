"""Batch sources: mini-batches of rows that come in blocks (a file's), shuffled within a buffer, in constant memory.

:class:`Stream` turns a function giving blocks of rows (``(x, y)`` arrays, one
pass over the data each call) into a batch source for :func:`chainrule.fit`:
each ``iter(stream)`` is one epoch of ``(x_batch, y_batch)``. The rows pass
through a shuffle buffer (:func:`shuffled`), so memory holds the buffer, one
block and one batch, whatever the number of rows. :class:`Moments` gives
means and standard deviations in one pass (Chan's parallel merge of Welford's
sums). :func:`chainrule.data.stream` makes a Stream of a CSV or Parquet file.

This module stands on the floor below :mod:`chainrule.data` (it knows no
files, only arrays).

Example: six rows in blocks of two and three, batches of two, a buffer of four::

    >>> import numpy as np
    >>> from chainrule.streams import Stream
    >>> x = np.arange(6.0)[:, None]
    >>> blocks = lambda: iter([(x[:2], x[:2, 0]), (x[2:5], x[2:5, 0]), (x[5:], x[5:, 0])])
    >>> source = Stream(blocks, batch_size=2, shuffle_buffer=4, seed=0)
    >>> epoch = [yb.tolist() for _, yb in source]
    >>> sorted(sum(epoch, []))                   # every row exactly once
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    >>> epoch == [yb.tolist() for _, yb in Stream(blocks, batch_size=2, shuffle_buffer=4, seed=0)]
    True
    >>> [yb.tolist() for _, yb in source.in_order()]   # file order, no shuffling
    [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Stream", "Statistics", "Moments", "shuffled", "chunked", "SHUFFLE_BUFFER"]

SHUFFLE_BUFFER = 100_000  # rows a Stream mixes by default (21 float64 columns: about 17 MB)

Rows = tuple[np.ndarray, Any]  # (x of shape (rows, features), y of shape (rows,) or None)


class Statistics(NamedTuple):
    """One pass's counts: the rows, each feature's mean and standard deviation (numpy's ``std``: divided
    by the rows), and the target's (None without a numeric target)."""

    rows: int
    feature_mean: np.ndarray
    feature_std: np.ndarray
    target_mean: float | None
    target_std: float | None


class Moments:
    """Means and sums of squared deviations of columns, merged a block at a time.

    Each block's own mean and sum of squares about it are merged with the running ones by Chan,
    Golub and LeVeque's formula (1979): with ``d = mean_b - mean_a``,
    ``mean = mean_a + d n_b / n`` and ``M2 = M2_a + M2_b + d^2 n_a n_b / n``. No sum of squares of
    raw values is formed, so a column far from 0 keeps its digits (the textbook ``E[x^2] - E[x]^2``
    would lose them).
    """

    def __init__(self, width: int) -> None:
        self.n = 0
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)

    def add(self, values: np.ndarray) -> None:
        """Merge the rows of ``values`` (rows, width)."""
        k = len(values)
        if k == 0:
            return
        mean_b = values.mean(axis=0)
        m2_b = np.square(values - mean_b).sum(axis=0)
        n = self.n + k
        d = mean_b - self.mean
        self.mean = self.mean + d * (k / n)
        self.m2 = self.m2 + m2_b + np.square(d) * (self.n * k / n)
        self.n = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.n, 1))


def chunked(blocks: Iterator[Rows], size: int) -> Iterator[Rows]:
    """The rows of ``blocks`` again in pieces of exactly ``size`` rows (the last may be shorter)."""
    feed = _Feed(blocks)
    while len(part := feed.take(size)[0]):
        yield part, feed.last_y


def shuffled(blocks: Iterator[Rows], rng: np.random.Generator, buffer: int, size: int) -> Iterator[Rows]:
    """Batches of ``size`` rows drawn from a buffer of ``buffer`` rows as the blocks come.

    The buffer is filled first; then each batch is ``size`` rows drawn at random (without
    replacement) from the buffer, and the next ``size`` rows of the blocks take their places; at
    the end the buffer is emptied in a random order. Every row comes out exactly once. A file
    that fits in the buffer comes out as ``rng.permutation(rows)`` in batches (as
    :func:`chainrule.fit` shuffles arrays, so the same seed gives the same batches).
    """
    feed = _Feed(blocks)
    pool_x, pool_y = feed.take(buffer)
    if len(pool_x) < buffer or feed.done():
        order = rng.permutation(len(pool_x))
        for i in range(0, len(pool_x), size):
            rows = order[i : i + size]
            yield pool_x[rows], None if pool_y is None else pool_y[rows]
        return
    while len(new_x := (new := feed.take(size))[0]):
        rows = rng.choice(buffer, size=len(new_x), replace=False)
        yield pool_x[rows], None if pool_y is None else pool_y[rows]
        pool_x[rows] = new_x
        if pool_y is not None:
            pool_y[rows] = new[1]
    order = rng.permutation(buffer)
    for i in range(0, buffer, size):
        rows = order[i : i + size]
        yield pool_x[rows], None if pool_y is None else pool_y[rows]


class _Feed:
    """Rows taken from a sequence of blocks, any number at a time."""

    def __init__(self, blocks: Iterator[Rows]) -> None:
        self.blocks, self.at = blocks, 0
        self.x: Any = None
        self.y: Any = None
        self.last_y: Any = None

    def done(self) -> bool:
        return not self._ready()

    def _ready(self) -> bool:
        while self.x is None or self.at == len(self.x):
            nxt = next(self.blocks, None)
            if nxt is None:
                return False
            self.x, self.y, self.at = nxt[0], nxt[1], 0
        return True

    def take(self, k: int) -> Rows:
        """Up to ``k`` rows (fewer only at the end): (x, y) as new arrays."""
        xs: list[np.ndarray] = []
        ys: list[Any] = []
        got = 0
        while got < k and self._ready():
            assert self.x is not None
            end = min(self.at + k - got, len(self.x))
            xs.append(self.x[self.at : end])
            ys.append(None if self.y is None else self.y[self.at : end])
            got += end - self.at
            self.at = end
        if not xs:
            self.last_y = None
            return np.empty((0, 0)), None
        x = np.concatenate(xs) if len(xs) > 1 else xs[0].copy()
        y = None if ys[0] is None else np.concatenate(ys) if len(ys) > 1 else ys[0].copy()
        self.last_y = y
        return x, y


class Stream:
    """A batch source: ``iter(stream)`` gives one epoch of ``(x_batch, y_batch)``, shuffled in a buffer.

    - ``blocks()``: a new pass over the data's rows, as ``(x, y)`` blocks (y may be None).
    - ``batch_size``: rows a batch (the last batches of an epoch may be shorter).
    - ``shuffle_buffer``: rows mixed at a time (at least ``batch_size`` are); 0: file order.
    - ``seed``: one generator drawn from epoch after epoch, so epoch 2 has a new order and
      the same seed gives the same batches in every epoch.
    - ``scale``: ``(feature_mean, feature_std, target_mean, target_std)`` applied to each
      batch (``(x - mean) / std``), or None; see :meth:`scaled`.

    ``rows`` is None until a whole pass has counted them.

    What the buffer means for the batches: a batch mixes rows only from about the
    ``shuffle_buffer`` rows around its place in the file. A file in random order gives
    batches as good as a full shuffle's; a file sorted (by the target, a date, a class)
    gives biased batches, each drawn from a narrow slice of the data, unless the buffer
    holds a large share of the file. Shuffle such a file once before streaming it.
    """

    def __init__(
        self,
        blocks: Callable[[], Iterator[Rows]],
        batch_size: int,
        shuffle_buffer: int = SHUFFLE_BUFFER,
        seed: int | None = None,
        scale: tuple | None = None,
    ) -> None:
        self.blocks, self.batch_size, self.shuffle_buffer, self.seed = blocks, batch_size, shuffle_buffer, seed
        self.rng = np.random.default_rng(seed)
        self.scale = None if scale is None else tuple(None if s is None else np.asarray(s, float) for s in scale)
        self.rows: int | None = None
        self.epochs = 0  # passes begun by iter()

    def __iter__(self) -> Iterator[Rows]:
        self.epochs += 1
        if self.shuffle_buffer == 0:
            return self.in_order()
        buffer = max(self.shuffle_buffer, self.batch_size)
        return self._counted(shuffled(self.blocks(), self.rng, buffer, self.batch_size))

    def in_order(self, size: int | None = None) -> Iterator[Rows]:
        """One pass in file order, in batches of ``size`` rows (default ``batch_size``), no generator drawn from."""
        return self._counted(chunked(self.blocks(), size or self.batch_size))

    def _counted(self, batches: Iterator[Rows]) -> Iterator[Rows]:
        n = 0
        for x, y in batches:
            n += len(x)
            yield self._scaled(x, y)
        self.rows = n

    def _scaled(self, x: np.ndarray, y: Any) -> Rows:
        if self.scale is None:
            return x, y
        mx, sx, my, sy = self.scale
        x = (x - mx) / sx
        if y is not None and my is not None:
            y = (y - my) / sy
        return x, y

    def statistics(self) -> Statistics:
        """One pass in file order (unscaled): the rows, the features' and the target's means and stds."""
        xs: Moments | None = None
        ys: Moments | None = Moments(1)
        for x, y in self.blocks():
            xs = xs or Moments(x.shape[1])
            xs.add(x)
            if ys is not None and y is not None and y.dtype.kind == "f":
                ys.add(y[:, None])
            else:
                ys = None
        if xs is None or xs.n == 0:
            raise ValueError("the stream has no rows")
        self.rows = xs.n
        if ys is None:
            return Statistics(xs.n, xs.mean, xs.std, None, None)
        return Statistics(xs.n, xs.mean, xs.std, float(ys.mean[0]), float(ys.std[0]))

    def scaled(self, feature_mean: Any, feature_std: Any, target_mean: Any = None, target_std: Any = None) -> Stream:
        """The same rows with the features (and a numeric target) standardized: a new Stream, its
        generator fresh from the seed."""
        out = Stream(self.blocks, self.batch_size, self.shuffle_buffer, self.seed,
                     (feature_mean, feature_std, target_mean, target_std))  # fmt: skip
        out.rows = self.rows
        return out
