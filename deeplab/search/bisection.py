"""The maximum-depth search itself: bisection over a trainability predicate, no training in here.

Seed 002 (``search(lr, upper, model_factory)``) bisects ``k = 3·mid`` over
``mid ∈ [1, upper/3]``: a depth whose last-epoch test error is below 0.2 is
"trainable" and sends the search deeper, any other sends it shallower; it
returns ``3·r``, the deepest depth it saw train. :class:`BoundarySearch` does
the same over the candidate depths ``lower, lower + step, …, upper`` and, with
``parallel = 1``, probes exactly the depths the seed probes, in the same order
(upper 24: 12, 6, 3).

The seed's bug. After the loop the seed means to make sure both boundary
depths, ``3r`` (deepest trainable) and ``3r + 3`` (shallowest untrainable),
were trained, "if they haven't been trained yet"::

    for l in [3*r, 3*r + 3]:
        if l not in cache:
            model = model_factory(layers).cuda()   # `layers`, not `l`
            ...
            print("Training CNN with {} layers".format(layers))

The body builds ``model_factory(layers)`` — ``layers`` is still the *last
depth the bisection probed* — so it retrains a depth it already trained (and
prints that depth), never the missing boundary depth, and throws the result
away. The check is also dead code in the cases where it could fire: a
bisection has always evaluated both neighbours of the boundary it returns,
except at the ends of the range — nothing trainable (``3r = 0``, not a
network) or everything trainable (``3r + 3 = upper + 3``, beyond the range
searched) — which are exactly where it retrains the wrong depth.

Here both boundary depths are evaluated by construction: the search keeps the
deepest trainable and shallowest untrainable depth *it has seen* as its
bracket, so when the bracket closes, both ends are real, evaluated probes.
At the range's ends the result says so honestly (``max_trainable=None``:
``lower`` already fails; ``min_untrainable=None``: every depth up to
``upper`` trains — raise ``upper``) instead of inventing depth 0 or
``upper + step``.

Parallel rounds. With ``parallel = N`` each round probes ``N`` depths that cut
the open bracket into ``N + 1`` near-equal parts, so a bracket of ``g``
candidates closes in about ``log_{N+1} g`` rounds instead of ``log₂ g``. For a
monotone predicate (every depth below the boundary trains, none above) any
bracketing search finds the same boundary, so parallel and sequential agree.
Real trainability need not be monotone; after a round the bracket becomes
(the deepest trainable depth below the shallowest untrainable one, the
shallowest untrainable one), and every pair "trainable at a deeper depth than
an untrainable one" that the probes show is reported in ``non_monotone`` —
a finding about the networks, not an error of the search.

What the ledger already knows. Both searches take ``known`` outcomes (the
ledger's probes of the same settings and seed, judged): they are used as if
probed, for free, so a search shares every probe with every other search of the
same settings. For a fresh ledger nothing changes (the seed's order above); for
a finished search the bracket closes at once and nothing is trained.

From a prior (:class:`PriorStartSearch`). Where the boundary is roughly known —
the notebook reports it, or another seed found it — a bisection over the whole
range wastes its first probes far from it (resnet_elu's k = 225, 339, 396, …,
about an hour each near k = 447). Starting at the prior K, the search probes K,
then walks up (K trainable) or down (K untrainable) by ``step``, doubling the
stride while the verdict does not change (K ± 1, 3, 7, 15 steps), and bisects
back inside the last stride, until it holds the seed's own criterion: "two
consecutive values for k such that the network is trainable with the smaller
one but not with the larger one". A prior within s steps of the boundary costs
at most 2·log₂(s + 1) + 2 probes; bisection costs log₂(range) + 1 whatever the prior.
Where the edge is ragged the pair it finds is the one nearest the prior, and a
bisection may find another (both are pairs by the criterion; ``non_monotone``
lists what the probes show).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from deeplab.errors import DeeplabError

__all__ = [
    "BisectionResult",
    "BoundarySearch",
    "PriorStartSearch",
    "RoundSearch",
    "bisect_trainability",
    "candidate_depths",
    "non_monotone_pairs",
]


def candidate_depths(lower: int, upper: int, step: int) -> range:
    """``lower, lower + step, …, upper`` (DeeplabError unless ``upper`` is on that grid).

    A ``range``, not a list: an absurd ``--upper`` must reach the memory check, not fill memory.
    """
    if step <= 0:
        raise DeeplabError(f"--step must be positive, got {step}")
    if lower <= 0:
        raise DeeplabError(f"--lower must be a positive depth, got {lower}")
    if lower > upper:
        raise DeeplabError(f"--lower {lower} is above --upper {upper}; give lower ≤ upper")
    if (upper - lower) % step:
        below = upper - (upper - lower) % step
        raise DeeplabError(
            f"--upper {upper} is not --lower {lower} plus a multiple of --step {step}; "
            f"use --upper {below} or {below + step}"
        )
    return range(lower, upper + 1, step)


def non_monotone_pairs(outcomes: dict[int, bool]) -> list[tuple[int, int]]:
    """Every ``(untrainable_depth, trainable_depth)`` with the trainable one deeper, shallowest first."""
    trainable = sorted(depth for depth, ok in outcomes.items() if ok)
    untrainable = sorted(depth for depth, ok in outcomes.items() if not ok)
    return [(bad, good) for bad in untrainable for good in trainable if good > bad]


@dataclass
class BisectionResult:
    """What a finished :class:`BoundarySearch` found."""

    max_trainable: int | None  # deepest trainable depth of the bracket; None: not even `lower` trains
    min_untrainable: int | None  # shallowest untrainable depth; None: everything up to `upper` trains
    outcomes: dict[int, bool]  # depth → trainable, in the order the depths were probed
    rounds: list[list[int]]  # the depths probed in each round
    non_monotone: list[tuple[int, int]] = field(default_factory=list)  # (untrainable, deeper trainable)

    @property
    def probes(self) -> int:
        return len(self.outcomes)


class RoundSearch:
    """The bookkeeping every search strategy shares (:class:`deeplab.search.driver.Strategy`): rounds of
    points, each recorded before the next round is asked for. A subclass says what to probe next
    (:meth:`_plan`, empty when finished) and what a closed round changes (:meth:`_round_closed`); its
    verdicts so far are :attr:`outcomes`, in the order they were taken."""

    noun = "point"

    def __init__(self) -> None:
        self.outcomes: dict[Any, bool] = {}
        self.rounds: list[list[Any]] = []
        self._pending: list[Any] = []

    def _plan(self) -> list[Any]:
        raise NotImplementedError

    def _round_closed(self, points: list[Any]) -> None:
        """Called once every point of a round has its verdict."""

    @property
    def done(self) -> bool:
        return not self._pending and not self._plan()

    def next_round(self) -> list[Any]:
        """The points to probe now; empty when the search is finished.

        Call again only after every point of the round has been recorded.
        """
        if self._pending:
            raise RuntimeError(f"{self.noun}s {self._pending} of the current round have no verdict yet")
        points = self._plan()
        if points:
            self._pending = list(points)
            self.rounds.append(list(points))
        return points

    def record(self, point: Any, trainable: bool) -> None:
        """The verdict for one point of the current round."""
        if point not in self._pending:
            raise RuntimeError(f"{self.noun} {point} is not waiting for a verdict (waiting: {self._pending})")
        self._pending.remove(point)
        self.outcomes[point] = bool(trainable)
        if not self._pending:
            self._round_closed(self.rounds[-1])


class _DepthSearch(RoundSearch):
    """A search over the depths ``lower, lower + step, …, upper`` that ends in a bracket: the deepest
    trainable depth below the shallowest untrainable one it holds (indices ``_low``, ``_high``)."""

    noun = "depth"

    def __init__(self, lower: int, upper: int, step: int, parallel: int):
        super().__init__()
        if parallel < 1:
            raise DeeplabError(f"--parallel must be ≥ 1, got {parallel}")
        self.depths = candidate_depths(lower, upper, step)
        self.parallel = parallel
        # -1: no trainable depth (below lower); len(depths): no untrainable one (above upper)
        self._low, self._high = -1, len(self.depths)

    def _index(self, depth: int) -> int:
        return (depth - self.depths.start) // self.depths.step

    def result(self) -> BisectionResult:
        if not self.done:
            raise RuntimeError("the search is not finished")
        low, high = self._low, self._high
        return BisectionResult(
            max_trainable=self.depths[low] if low >= 0 else None,
            min_untrainable=self.depths[high] if high < len(self.depths) else None,
            outcomes=dict(self.outcomes),
            rounds=[list(r) for r in self.rounds],
            non_monotone=non_monotone_pairs(self.outcomes),
        )


class BoundarySearch(_DepthSearch):
    """Bisection as a state machine: ask :meth:`next_round` what to probe, :meth:`record` the verdicts.

    ``parallel = 1`` is the seed's bisection (``mid = (l + r) // 2``);
    ``parallel = N`` probes N depths per round (module docstring). The
    machine never trains anything, so a caller can run a round's probes in
    any order, on any devices, or read them from a ledger.
    """

    def __init__(self, lower: int, upper: int, step: int = 3, parallel: int = 1,
                 known: dict[int, bool] | None = None):
        super().__init__(lower, upper, step, parallel)
        # the ledger's verdicts on the grid count as probed (module docstring)
        self.outcomes.update({depth: bool(ok) for depth, ok in (known or {}).items() if depth in self.depths})
        self._round_closed([])

    def _plan(self) -> list[int]:
        low, high = self._low, self._high
        gap = high - low
        if gap <= 1:
            # Closed. Both ends are probes by construction; re-check rather than trust it.
            return [self.depths[i] for i in (low, high) if 0 <= i < len(self.depths) and self.depths[i] not in self.outcomes]
        cuts = sorted({low + (gap * j) // (self.parallel + 1) for j in range(1, self.parallel + 1)})
        return [self.depths[i] for i in cuts if low < i < high and self.depths[i] not in self.outcomes]

    def _round_closed(self, points: list[int]) -> None:
        untrainable = [self._index(d) for d, ok in self.outcomes.items() if not ok]
        self._high = min(untrainable, default=len(self.depths))
        trainable_below = [self._index(d) for d, ok in self.outcomes.items() if ok and self._index(d) < self._high]
        self._low = max(trainable_below, default=-1)


class PriorStartSearch(_DepthSearch):
    """The seed's consecutive pair found outward from a prior depth ``start`` (module docstring).

    The same state machine as :class:`BoundarySearch` (:meth:`next_round`,
    :meth:`record`, :attr:`done`, :meth:`result`), so the search's driver runs
    either. ``parallel = N`` probes the next N points of the walk at once (as if
    the verdict did not change), then N cuts of the bracket. ``known`` verdicts
    (the ledger's) are taken where the walk or the bisection would look, and a
    known verdict beyond the walk's end closes the bracket at once (the nearest
    untrainable above a trainable start, the nearest trainable below an
    untrainable one).
    """

    def __init__(self, lower: int, upper: int, step: int = 3, start: int | None = None, parallel: int = 1,
                 known: dict[int, bool] | None = None):
        super().__init__(lower, upper, step, parallel)
        if start is None or start not in self.depths:
            inside = min(max(start if start is not None else lower, lower), upper)
            below = inside - (inside - lower) % step
            hint = f"--start {below}" + (f" or {below + step}" if below + step <= upper else "")
            raise DeeplabError(f"--start {start} is not one of the depths {lower}, {lower + step}, …, {upper}; "
                               f"give {hint}")
        self.start = start
        self._known = {depth: bool(ok) for depth, ok in (known or {}).items() if depth in self.depths}
        self._phase = "start"  # start → up | down → bisect → done
        self._stride = 1

    # ----------------------------------------------------------------- state
    def _apply(self, index: int, trainable: bool) -> None:
        """One verdict, in walk order: move the walk or the bracket."""
        if self._phase == "start":
            if trainable:
                self._phase, self._low = "up", index
            else:
                self._phase, self._high = "down", index
        elif self._phase == "up":
            if index <= self._low:
                return
            if trainable:
                self._low, self._stride = index, self._stride * 2
            else:
                self._phase, self._high = "bisect", index
        elif self._phase == "down":
            if index >= self._high:
                return
            if trainable:
                self._phase, self._low = "bisect", index
            else:
                self._high, self._stride = index, self._stride * 2
        elif self._phase == "bisect" and self._low < index < self._high:
            if trainable:
                self._low = index
            else:
                self._high = index
        last = len(self.depths) - 1
        if (self._phase == "up" and self._low == last) or (self._phase == "down" and self._high == 0) or \
                (self._phase == "bisect" and self._high - self._low <= 1):
            self._phase = "done"

    def _consult(self, depth: int) -> None:
        """Take the ledger's verdict for ``depth`` as if probed."""
        trainable = self._known.pop(depth)
        self.outcomes[depth] = trainable
        self._apply(self._index(depth), trainable)

    def _candidates(self) -> list[int]:
        """The indices the current phase would probe next (known ones included)."""
        n = len(self.depths)
        if self._phase == "start":
            points = [self._index(self.start)]
            position, stride = points[0], 1
            while len(points) < self.parallel and position < n - 1:
                position, stride = min(position + stride, n - 1), stride * 2
                points.append(position)
            return points
        if self._phase in ("up", "down"):
            points, position, stride = [], self._low if self._phase == "up" else self._high, self._stride
            while len(points) < self.parallel:
                position = min(position + stride, n - 1) if self._phase == "up" else max(position - stride, 0)
                if points and position == points[-1]:
                    break
                points.append(position)
                stride *= 2
            return points
        if self._phase == "bisect":
            low, high = self._low, self._high
            gap = high - low
            return sorted({low + (gap * j) // (self.parallel + 1) for j in range(1, self.parallel + 1)} - {low, high})
        return []

    def _plan(self) -> list[int]:
        """The next depths to train, after taking every known verdict the search can use now."""
        while self._phase != "done":
            # a known verdict beyond the walk closes its bracket at once (the nearest one)
            if self._phase == "up":
                above = [d for d, ok in self._known.items() if not ok and self._index(d) > self._low]
                if above:
                    self._consult(min(above))
                    continue
            if self._phase == "down":
                below = [d for d, ok in self._known.items() if ok and self._index(d) < self._high]
                if below:
                    self._consult(max(below))
                    continue
            if self._phase == "bisect":
                inside = [d for d in self._known if self._low < self._index(d) < self._high]
                if inside:
                    middle = (self._low + self._high) / 2
                    self._consult(min(inside, key=lambda d: (abs(self._index(d) - middle), d)))
                    continue
            points = [self.depths[i] for i in self._candidates()]
            known = [d for d in points if d in self._known]
            if known:
                self._consult(known[0])
                continue
            return [d for d in points if d not in self.outcomes]
        return []

    def _round_closed(self, points: list[int]) -> None:
        # apply the round in walk order: the first changed verdict ends the walk
        for depth in points:
            self._apply(self._index(depth), self.outcomes[depth])


def bisect_trainability(
    is_trainable: Callable[[int], bool],
    lower: int,
    upper: int,
    step: int = 3,
    parallel: int = 1,
    evaluate_round: Callable[[Sequence[int]], Iterable[tuple[int, bool]]] | None = None,
) -> BisectionResult:
    """The deepest trainable depth in ``lower, lower + step, …, upper``, by bisection.

    ``is_trainable(k)`` judges one depth. ``evaluate_round(depths)`` — if given —
    judges a whole round at once (e.g. on N devices), yielding ``(depth,
    trainable)`` pairs in any order; by default each depth goes to
    ``is_trainable`` in turn. Pure: all training lives in the predicate.
    """
    search = BoundarySearch(lower, upper, step, parallel)
    if evaluate_round is None:
        def evaluate_round(depths: Sequence[int]) -> Iterable[tuple[int, bool]]:
            return ((depth, is_trainable(depth)) for depth in depths)
    while depths := search.next_round():
        for depth, trainable in evaluate_round(depths):
            search.record(depth, trainable)
    return search.result()
