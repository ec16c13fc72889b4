"""The two small statistics that the LR range test, the plateau callback and the demo share.

- :class:`EMA` / :func:`ema`: the bias-corrected exponential moving average
  (as in Adam and fastai), streaming or over a whole array; both give the same
  float64 numbers, value for value.
- :class:`RunningMeanReader` / :func:`mean_since`: the mean of what was added to
  a running mean between two readings of it. Keras's batch ``logs["loss"]``
  (and every other batch metric) is the running mean since the epoch began,
  weighted by batch size; from two consecutive readings this recovers the value
  of the batches in between.

Plain Python and NumPy: no Keras, no backend.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["EMA", "ema", "RunningMeanReader", "mean_since"]


def _smoothing(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"smoothing must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {value!r}")
    return value


class EMA:
    r"""Bias-corrected exponential moving average of a stream of numbers.

    .. math:: a_n = s\,a_{n-1} + (1 - s)\,v_n,\quad a_0 = 0,\qquad
              \text{value}_n = a_n / (1 - s^n)

    The correction removes the pull towards the zero start: the first value is
    the first input and a constant stream stays constant (both to rounding);
    ``smoothing=0`` gives the latest value. The state is two plain numbers, ``average`` (:math:`a_n`) and ``count`` (:math:`n`), so it can
    be saved and resumed: ``EMA(s, average=e.average, count=e.count)`` continues
    exactly where ``e`` stopped. A non-finite value makes every later value
    non-finite (nothing is skipped silently).

    >>> e = EMA(0.5)
    >>> e.update(4.0), e.update(1.0)
    (4.0, 2.0)
    >>> EMA(0.5, average=e.average, count=e.count).update(1.0) == e.update(1.0)
    True
    """

    __slots__ = ("smoothing", "average", "count")

    def __init__(self, smoothing: float, average: float = 0.0, count: int = 0):
        self.smoothing = _smoothing(smoothing)
        if isinstance(average, bool) or not isinstance(average, (int, float, np.integer,
                                                                 np.floating)):
            raise TypeError(f"average must be a number, got {average!r}")
        if isinstance(count, bool) or not isinstance(count, (int, float, np.integer,
                                                             np.floating)) \
                or not float(count).is_integer() or count < 0:
            raise ValueError(f"count must be a whole number >= 0, got {count!r}")
        if count == 0 and average != 0.0:
            raise ValueError(f"average must be 0 when count is 0, got average={average!r}")
        self.average = float(average)
        self.count = int(count)

    def update(self, value: float) -> float:
        """Add ``value`` to the stream; return the new bias-corrected average."""
        s = self.smoothing
        self.average = s * self.average + (1.0 - s) * float(value)
        self.count += 1
        return self.value

    @property
    def value(self) -> float:
        """The bias-corrected average so far (NaN before the first update)."""
        if self.count == 0:
            return math.nan
        return self.average / (1.0 - self.smoothing ** self.count)

    def __repr__(self) -> str:
        return f"EMA(smoothing={self.smoothing!r}, average={self.average!r}, count={self.count})"


def ema(values, smoothing: float) -> np.ndarray:
    r"""The bias-corrected EMA of a whole array: ``out[k]`` is :class:`EMA`'s value after ``values[k]``.

    .. math:: a_k = \beta a_{k-1} + (1 - \beta)\,v_k,\quad
              s_k = a_k / (1 - \beta^{k+1}),\quad a_{-1} = 0

    Float64, the same numbers as feeding the values one by one to
    :class:`EMA` (so a decision taken on the stream can be replayed on the
    array). ``smoothing=0`` returns the values unchanged.

    >>> ema(np.array([2.0, 2.0, 2.0]), 0.9).tolist()
    [2.0, 2.0, 2.0]
    """
    stream = EMA(smoothing)
    values = np.asarray(values, np.float64).reshape(-1)
    return np.fromiter((stream.update(v) for v in values), np.float64, count=values.size)


def mean_since(mean: float, count: float, prev_mean: float = 0.0,
               prev_count: float = 0.0) -> float:
    r"""The mean of the values added to a running mean since an earlier reading of it.

    A running mean read as ``prev_mean`` over ``prev_count`` (weights: samples
    or batches) and later as ``mean`` over ``count`` got, in between, values
    whose mean is

    .. math:: \frac{\text{count}\cdot\text{mean} - \text{prev\_count}\cdot\text{prev\_mean}}
                   {\text{count} - \text{prev\_count}}

    With ``prev_count=0`` that is ``mean`` itself. Keras's loss mean is weighted
    by batch size, so counts in samples give the exact batch value; counts in
    batches are exact when the batches have equal size.

    Precision: Keras logs the mean as float32, so the result carries an error
    of about ``count / (count - prev_count)`` float32 roundings of ``mean``
    (relative ``1e-4`` on batch 1000 of an epoch of equal batches).

    >>> mean_since(2.0, 3, prev_mean=1.5, prev_count=2)   # (6 - 3) / 1
    3.0
    """
    if not count > prev_count >= 0:
        raise ValueError(f"count must be > prev_count >= 0, got count={count!r}, "
                         f"prev_count={prev_count!r}")
    if prev_count == 0:
        return float(mean)
    return (float(count) * float(mean) - float(prev_count) * float(prev_mean)) \
        / (float(count) - float(prev_count))


class RunningMeanReader:
    """The value of each new chunk, from successive readings of a running mean.

    ``read(mean, count)`` takes the running mean now and how much it covers now
    (samples or batches since the epoch began, Keras's ``batch + 1`` or a
    sample count) and returns the mean of what was added since the previous
    reading (:func:`mean_since`). A reading that covers no more than the
    previous one is a restart (a new epoch: Keras resets its metrics at each
    epoch begin, and with ``steps_per_execution`` the hooks may skip batch 0),
    so the mean is taken from zero. ``reset()`` forgets the previous reading.

    >>> r = RunningMeanReader()
    >>> r.read(4.0, 1), r.read(3.0, 2), r.read(5.0, 1)   # 4, then 2, then a new epoch
    (4.0, 2.0, 5.0)
    """

    __slots__ = ("mean", "count")

    def __init__(self):
        self.mean, self.count = 0.0, 0.0

    def reset(self) -> None:
        """Forget the previous reading: the next one is taken from zero."""
        self.mean, self.count = 0.0, 0.0

    def read(self, mean: float, count: float) -> float:
        """The mean of what the running mean took in since the previous reading."""
        if isinstance(count, bool) or not isinstance(count, (int, float, np.integer,
                                                             np.floating)) or not count > 0:
            raise ValueError(f"count must be a number > 0, got {count!r}")
        if count <= self.count:
            self.reset()
        value = mean_since(mean, count, self.mean, self.count)
        self.mean, self.count = float(mean), float(count)
        return value

    def __repr__(self) -> str:
        return f"RunningMeanReader(mean={self.mean!r}, count={self.count!r})"
