"""ACR fibromyalgia instrument arithmetic: pain index, pain regions, symptom severity, distress.

Every function returns a :class:`Score` with bounds: an unknown item widens the bounds by
what it could contribute, so a score is exact only when every item that could change it is
known. ``Score.unknown_items`` names the unknown items that could still change the score.
Nothing here decides what a score means: diagnostic thresholds live in the rulesets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple

from .records import Score

__all__ = [
    "PAIN_REGIONS",
    "PART_A_ITEMS",
    "PART_A_ITEM_MAXIMUM",
    "PART_B_2010_ITEM",
    "PART_B_2010_MAXIMUM",
    "PART_B_2016_ITEMS",
    "WPI_SITES",
    "WpiSite",
    "generalized_pain_regions",
    "polysymptomatic_distress",
    "symptom_severity_2010",
    "symptom_severity_2016",
    "symptom_severity_part_a",
    "widespread_pain_index",
]


class WpiSite(NamedTuple):
    """Where a widespread pain index site belongs in the 2016 five-region grouping."""

    region: str
    counts_for_generalized_pain: bool


# The 19 WPI sites (identical in ACR 2010, 2011 and 2016) and their 2016 regions.
# Sources: Wolfe 2010 (S-01) and the J Rheum Dis reproduction of the 2016 criteria (S-04) for
# the sites and regions; Wolfe 2011 Table 4 (S-05) for "the jaw, chest, and abdomen are not
# included in the 5-region definition". Jaw, chest and abdomen still count towards the WPI.
WPI_SITES: Final[Mapping[str, WpiSite]] = MappingProxyType(
    {
        "jaw_left": WpiSite("left_upper", counts_for_generalized_pain=False),
        "shoulder_girdle_left": WpiSite("left_upper", counts_for_generalized_pain=True),
        "upper_arm_left": WpiSite("left_upper", counts_for_generalized_pain=True),
        "lower_arm_left": WpiSite("left_upper", counts_for_generalized_pain=True),
        "jaw_right": WpiSite("right_upper", counts_for_generalized_pain=False),
        "shoulder_girdle_right": WpiSite("right_upper", counts_for_generalized_pain=True),
        "upper_arm_right": WpiSite("right_upper", counts_for_generalized_pain=True),
        "lower_arm_right": WpiSite("right_upper", counts_for_generalized_pain=True),
        # hip = buttock and trochanter
        "hip_left": WpiSite("left_lower", counts_for_generalized_pain=True),
        "upper_leg_left": WpiSite("left_lower", counts_for_generalized_pain=True),
        "lower_leg_left": WpiSite("left_lower", counts_for_generalized_pain=True),
        "hip_right": WpiSite("right_lower", counts_for_generalized_pain=True),
        "upper_leg_right": WpiSite("right_lower", counts_for_generalized_pain=True),
        "lower_leg_right": WpiSite("right_lower", counts_for_generalized_pain=True),
        "neck": WpiSite("axial", counts_for_generalized_pain=True),
        "upper_back": WpiSite("axial", counts_for_generalized_pain=True),
        "lower_back": WpiSite("axial", counts_for_generalized_pain=True),
        "chest": WpiSite("axial", counts_for_generalized_pain=False),
        "abdomen": WpiSite("axial", counts_for_generalized_pain=False),
    }
)

#: The 2016 regions 1 to 5, in the order the criteria list them.
PAIN_REGIONS: Final[tuple[str, ...]] = (
    "left_upper",
    "right_upper",
    "left_lower",
    "right_lower",
    "axial",
)

#: Symptom severity part A items, each scored 0-3 over the past week.
PART_A_ITEMS: Final[tuple[str, ...]] = ("fatigue", "waking_unrefreshed", "cognitive_symptoms")
PART_A_ITEM_MAXIMUM: Final = 3
#: 2011/2016 part B: three symptoms present during the previous 6 months, 0 or 1 each.
PART_B_2016_ITEMS: Final[tuple[str, ...]] = (
    "headaches",
    "lower_abdominal_pain_or_cramps",
    "depression",
)
#: 2010 part B: the physician's estimate of "somatic symptoms in general", 0-3.
PART_B_2010_ITEM: Final = "sss_part_b_2010"
PART_B_2010_MAXIMUM: Final = 3


def _check_sites(sites: Mapping[str, bool | None]) -> None:
    unknown = sorted(set(sites) - set(WPI_SITES))
    if unknown:
        raise ValueError(f"unknown wpi sites: {', '.join(unknown)}")


def widespread_pain_index(sites: Mapping[str, bool | None]) -> Score:
    """Widespread pain index, 0-19: the number of painful sites.

    ``sites`` maps site ids of :data:`WPI_SITES` to painful (true), not painful (false) or
    unknown (``None``); a site that is not in the mapping is unknown. Each unknown site raises
    the maximum by one.
    """
    _check_sites(sites)
    painful = sum(1 for site in WPI_SITES if sites.get(site) is True)
    unknown = tuple(site for site in WPI_SITES if sites.get(site) is None)
    return Score(minimum=painful, maximum=painful + len(unknown), unknown_items=unknown)


def generalized_pain_regions(sites: Mapping[str, bool | None]) -> Score:
    """Number of 2016 regions (0-5) with at least one painful site that counts.

    Jaw, chest and abdomen never make a region positive. The minimum counts regions with a
    known painful counting site; the maximum adds regions that an unknown counting site could
    still make positive. Only those unknown sites are listed in ``unknown_items``.
    """
    _check_sites(sites)
    positive: set[str] = set()
    possible: set[str] = set()
    for site, spec in WPI_SITES.items():
        if spec.counts_for_generalized_pain and sites.get(site) is True:
            positive.add(spec.region)
    undecided: list[str] = []
    for site, spec in WPI_SITES.items():
        if (
            spec.counts_for_generalized_pain
            and sites.get(site) is None
            and spec.region not in positive
        ):
            possible.add(spec.region)
            undecided.append(site)
    return Score(
        minimum=len(positive),
        maximum=len(positive) + len(possible),
        unknown_items=tuple(undecided),
    )


def symptom_severity_part_a(
    fatigue: int | None = None,
    waking_unrefreshed: int | None = None,
    cognitive_symptoms: int | None = None,
    subtotal: int | None = None,
) -> Score:
    """Symptom severity part A, 0-9: fatigue, waking unrefreshed and cognitive symptoms.

    A known ``subtotal`` makes the score exact even when the items are unknown (a report may
    give only the subtotal); it must then be reachable from the known items, else
    ``ValueError``. Without a subtotal each unknown item adds 0-3 to the bounds.
    """
    items = {
        "fatigue": fatigue,
        "waking_unrefreshed": waking_unrefreshed,
        "cognitive_symptoms": cognitive_symptoms,
    }
    for name, value in items.items():
        if value is not None and not 0 <= value <= PART_A_ITEM_MAXIMUM:
            raise ValueError(f"{name} must be 0-{PART_A_ITEM_MAXIMUM}, got {value}")
    known = sum(value for value in items.values() if value is not None)
    unknown = tuple(name for name, value in items.items() if value is None)
    highest = known + PART_A_ITEM_MAXIMUM * len(unknown)
    if subtotal is None:
        return Score(minimum=known, maximum=highest, unknown_items=unknown)
    if not known <= subtotal <= highest:
        raise ValueError(f"part a subtotal {subtotal} is outside {known}-{highest} from its items")
    return Score(minimum=subtotal, maximum=subtotal)


def symptom_severity_2016(
    part_a: Score,
    headaches: bool | None,
    lower_abdominal_pain_or_cramps: bool | None,
    depression: bool | None,
) -> Score:
    """Symptom severity with the 2011/2016 part B, 0-12: part A plus three 0/1 symptoms.

    Each unknown part-B symptom adds 0-1 to the bounds.
    """
    items = {
        "headaches": headaches,
        "lower_abdominal_pain_or_cramps": lower_abdominal_pain_or_cramps,
        "depression": depression,
    }
    present = sum(1 for value in items.values() if value is True)
    unknown = tuple(name for name, value in items.items() if value is None)
    return Score(
        minimum=part_a.minimum + present,
        maximum=part_a.maximum + present + len(unknown),
        unknown_items=_merge(part_a.unknown_items, unknown),
    )


def symptom_severity_2010(part_a: Score, somatic_symptoms: int | None) -> Score:
    """Symptom severity with the 2010 part B, 0-12: part A plus the physician's 0-3 estimate.

    An unknown estimate adds 0-3 to the bounds.
    """
    if somatic_symptoms is None:
        return Score(
            minimum=part_a.minimum,
            maximum=part_a.maximum + PART_B_2010_MAXIMUM,
            unknown_items=_merge(part_a.unknown_items, (PART_B_2010_ITEM,)),
        )
    if not 0 <= somatic_symptoms <= PART_B_2010_MAXIMUM:
        raise ValueError(f"2010 part b must be 0-{PART_B_2010_MAXIMUM}, got {somatic_symptoms}")
    return Score(
        minimum=part_a.minimum + somatic_symptoms,
        maximum=part_a.maximum + somatic_symptoms,
        unknown_items=part_a.unknown_items,
    )


def polysymptomatic_distress(widespread_pain_index: Score, symptom_severity_2016: Score) -> Score:
    """Polysymptomatic distress, 0-31: widespread pain index plus 2016 symptom severity.

    The two scores share no items, so their bounds add.
    """
    return Score(
        minimum=widespread_pain_index.minimum + symptom_severity_2016.minimum,
        maximum=widespread_pain_index.maximum + symptom_severity_2016.maximum,
        unknown_items=_merge(
            widespread_pain_index.unknown_items, symptom_severity_2016.unknown_items
        ),
    )


def _merge(*groups: Iterable[str]) -> tuple[str, ...]:
    """Concatenate item names in order, keeping the first of any repeats."""
    return tuple(dict.fromkeys(name for group in groups for name in group))
