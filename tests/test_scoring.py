"""ACR instrument arithmetic: exact scores, bounds from unknown items, and the site table."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_rules.records import Score
from cds_rules.scoring import (
    PAIN_REGIONS,
    WPI_SITES,
    generalized_pain_regions,
    polysymptomatic_distress,
    symptom_severity_2010,
    symptom_severity_2016,
    symptom_severity_part_a,
    widespread_pain_index,
)

ALL_SITES = tuple(WPI_SITES)


def painful(*sites: str) -> dict[str, bool | None]:
    """Every site known: the given ones painful, all others not."""
    return {site: site in sites for site in ALL_SITES}


def bounds(score: Score) -> tuple[int, int]:
    return score.minimum, score.maximum


def test_site_table_has_19_sites_in_five_regions_with_jaw_chest_abdomen_not_counting() -> None:
    assert len(WPI_SITES) == 19
    assert {spec.region for spec in WPI_SITES.values()} == set(PAIN_REGIONS)
    not_counting = {
        site for site, spec in WPI_SITES.items() if not spec.counts_for_generalized_pain
    }
    assert not_counting == {"jaw_left", "jaw_right", "chest", "abdomen"}
    assert [site for site, spec in WPI_SITES.items() if spec.region == "axial"] == [
        "neck",
        "upper_back",
        "lower_back",
        "chest",
        "abdomen",
    ]


SEED_SITES = (
    "shoulder_girdle_left",
    "shoulder_girdle_right",
    "upper_arm_left",
    "upper_arm_right",
    "hip_left",
    "hip_right",
    "lower_leg_left",
    "lower_leg_right",
    "neck",
    "upper_back",
    "lower_back",
)

# (description, site states, expected WPI bounds, expected region bounds)
SITE_CASES: list[tuple[str, dict[str, bool | None], tuple[int, int], tuple[int, int]]] = [
    ("no pain anywhere", painful(), (0, 0), (0, 0)),
    ("every site painful", painful(*ALL_SITES), (19, 19), (5, 5)),
    ("nothing known", {}, (0, 19), (0, 5)),
    ("seed table 1", painful(*SEED_SITES), (11, 11), (5, 5)),
    (
        "V01: one site per region",
        painful(
            "shoulder_girdle_left", "shoulder_girdle_right", "hip_left", "hip_right", "lower_back"
        ),
        (5, 5),
        (5, 5),
    ),
    (
        "V02: jaw, chest, abdomen add to the index but not to regions",
        painful(
            "jaw_left",
            "jaw_right",
            "chest",
            "abdomen",
            "shoulder_girdle_left",
            "upper_arm_left",
            "shoulder_girdle_right",
            "upper_arm_right",
            "neck",
        ),
        (9, 9),
        (3, 3),
    ),
    ("V12: regional pain", painful("lower_back", "hip_left", "upper_leg_left"), (3, 3), (2, 2)),
    (
        "only non-counting sites",
        painful("jaw_left", "jaw_right", "chest", "abdomen"),
        (4, 4),
        (0, 0),
    ),
    ("unknown chest cannot add a region", {**painful(), "chest": None}, (0, 1), (0, 0)),
    (
        "unknown neck in an already positive axial region",
        {**painful("lower_back"), "neck": None},
        (1, 2),
        (1, 1),
    ),
    (
        "two unknown sites in one empty region add one region",
        {**painful("neck"), "hip_left": None, "lower_leg_left": None},
        (1, 3),
        (1, 2),
    ),
    (
        "partial mapping: missing sites are unknown",
        {"neck": True, "lower_back": False},
        (1, 18),
        (1, 5),
    ),
]


@pytest.mark.parametrize(
    ("sites", "index", "regions"),
    [case[1:] for case in SITE_CASES],
    ids=[case[0] for case in SITE_CASES],
)
def test_widespread_pain_index_and_regions(
    sites: dict[str, bool | None], index: tuple[int, int], regions: tuple[int, int]
) -> None:
    assert bounds(widespread_pain_index(sites)) == index
    assert bounds(generalized_pain_regions(sites)) == regions


def test_unknown_items_name_the_sites_that_could_change_the_score() -> None:
    sites = {**painful("lower_back"), "neck": None, "hip_left": None, "chest": None}
    assert widespread_pain_index(sites).unknown_items == ("hip_left", "neck", "chest")
    # neck cannot change the regions (axial is already positive), chest never counts
    assert generalized_pain_regions(sites).unknown_items == ("hip_left",)


def test_unknown_site_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="nek"):
        widespread_pain_index({"nek": True})


# (description, part A arguments, expected bounds, expected unknown items)
PART_A_CASES: list[tuple[str, dict[str, int | None], tuple[int, int], tuple[str, ...]]] = [
    ("all items", {"fatigue": 3, "waking_unrefreshed": 3, "cognitive_symptoms": 2}, (8, 8), ()),
    ("seed: subtotal only", {"subtotal": 7}, (7, 7), ()),
    ("nothing known", {}, (0, 9), ("fatigue", "waking_unrefreshed", "cognitive_symptoms")),
    ("one item unknown", {"fatigue": 2, "waking_unrefreshed": 1}, (3, 6), ("cognitive_symptoms",)),
    (
        "items and matching subtotal",
        {"fatigue": 2, "waking_unrefreshed": 2, "cognitive_symptoms": 1, "subtotal": 5},
        (5, 5),
        (),
    ),
    ("subtotal beats unknown items", {"fatigue": 3, "subtotal": 7}, (7, 7), ()),
]


@pytest.mark.parametrize(
    ("arguments", "expected", "unknown"),
    [case[1:] for case in PART_A_CASES],
    ids=[case[0] for case in PART_A_CASES],
)
def test_symptom_severity_part_a(
    arguments: dict[str, int | None], expected: tuple[int, int], unknown: tuple[str, ...]
) -> None:
    score = symptom_severity_part_a(**arguments)
    assert bounds(score) == expected
    assert score.unknown_items == unknown


@pytest.mark.parametrize(
    "arguments",
    [
        {"fatigue": 3, "waking_unrefreshed": 3, "cognitive_symptoms": 3, "subtotal": 7},
        {"fatigue": 1, "subtotal": 8},
        {"fatigue": 4},
    ],
)
def test_symptom_severity_part_a_rejects_impossible_items(arguments: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        symptom_severity_part_a(**arguments)


# (description, part A, headaches, cramps, depression, expected bounds)
SSS_2016_CASES: list[tuple[str, Score, bool | None, bool | None, bool | None, tuple[int, int]]] = [
    ("V01", Score(minimum=8, maximum=8), True, False, False, (9, 9)),
    ("V02", Score(minimum=5, maximum=5), True, False, False, (6, 6)),
    ("seed: only headaches known", Score(minimum=7, maximum=7), True, None, None, (8, 10)),
    ("V12: no part B given", Score(minimum=7, maximum=7), None, None, None, (7, 10)),
    ("all present", Score(minimum=9, maximum=9), True, True, True, (12, 12)),
    ("part A unknown, part B absent", Score(minimum=0, maximum=9), False, False, False, (0, 9)),
]


@pytest.mark.parametrize(
    ("part_a", "headaches", "cramps", "depression", "expected"),
    [case[1:] for case in SSS_2016_CASES],
    ids=[case[0] for case in SSS_2016_CASES],
)
def test_symptom_severity_2016(
    part_a: Score,
    headaches: bool | None,
    cramps: bool | None,
    depression: bool | None,
    expected: tuple[int, int],
) -> None:
    score = symptom_severity_2016(part_a, headaches, cramps, depression)
    assert bounds(score) == expected


def test_symptom_severity_2016_lists_unknown_items_of_both_parts() -> None:
    part_a = symptom_severity_part_a(fatigue=2, waking_unrefreshed=2)
    score = symptom_severity_2016(part_a, True, None, False)
    assert bounds(score) == (5, 9)
    assert score.unknown_items == ("cognitive_symptoms", "lower_abdominal_pain_or_cramps")


@pytest.mark.parametrize(
    ("part_a", "part_b", "expected", "unknown"),
    [
        (Score(minimum=7, maximum=7), 2, (9, 9), ()),  # seed as printed
        (Score(minimum=7, maximum=7), 3, (10, 10), ()),  # V12
        (Score(minimum=7, maximum=7), None, (7, 10), ("sss_part_b_2010",)),
        (Score(minimum=0, maximum=9), None, (0, 12), ("sss_part_b_2010",)),
    ],
)
def test_symptom_severity_2010(
    part_a: Score, part_b: int | None, expected: tuple[int, int], unknown: tuple[str, ...]
) -> None:
    score = symptom_severity_2010(part_a, part_b)
    assert bounds(score) == expected
    assert score.unknown_items == unknown


def test_polysymptomatic_distress_adds_bounds() -> None:
    seed = polysymptomatic_distress(
        Score(minimum=11, maximum=11),
        Score(minimum=8, maximum=10, unknown_items=("depression",)),
    )
    assert (bounds(seed), seed.unknown_items) == ((19, 21), ("depression",))
    assert bounds(
        polysymptomatic_distress(Score(minimum=0, maximum=19), Score(minimum=0, maximum=12))
    ) == (0, 31)
    assert bounds(
        polysymptomatic_distress(Score(minimum=5, maximum=5), Score(minimum=9, maximum=9))
    ) == (14, 14)  # V01


@st.composite
def partly_known_sites(draw: st.DrawFn) -> dict[str, bool | None]:
    """All 19 sites, each painful or not, with up to 4 of them unknown."""
    states: dict[str, bool | None] = {site: draw(st.booleans(), label=site) for site in ALL_SITES}
    unknown = draw(st.lists(st.sampled_from(ALL_SITES), max_size=4, unique=True))
    for site in unknown:
        states[site] = None
    return states


@given(partly_known_sites())
def test_bounds_contain_and_reach_every_completion_of_the_unknown_sites(
    sites: dict[str, bool | None],
) -> None:
    unknown = [site for site, state in sites.items() if state is None]
    index = widespread_pain_index(sites)
    regions = generalized_pain_regions(sites)
    index_values = set()
    region_values = set()
    for completion in itertools.product((False, True), repeat=len(unknown)):
        complete = {**sites, **dict(zip(unknown, completion, strict=True))}
        exact_index = widespread_pain_index(complete)
        exact_regions = generalized_pain_regions(complete)
        assert exact_index.exact and exact_regions.exact
        assert index.minimum <= exact_index.minimum <= index.maximum
        assert regions.minimum <= exact_regions.minimum <= regions.maximum
        index_values.add(exact_index.minimum)
        region_values.add(exact_regions.minimum)
    # the bounds are tight: both ends are reached by some completion
    assert {index.minimum, index.maximum} <= index_values
    assert {regions.minimum, regions.maximum} <= region_values
