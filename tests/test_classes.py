import pytest
from hypothesis import given, settings, strategies as st

from geogan.classes import load_schema, parse_length_m
from geogan.errors import RulesError


def test_schema_has_the_required_classes(schema):
    for name in ("background", "building", "road", "path", "railway", "water", "woodland", "grass",
                 "farmland", "impervious", "bare", "wetland"):
        schema.by_name(name)
    assert schema.classes[0].name == "background"
    assert len({c.color for c in schema.classes}) == len(schema.classes)  # palette colours are distinct


@pytest.mark.parametrize("tags,kind,expected", [
    ({"building": "yes"}, "area", "building"),
    ({"building": "yes", "landuse": "grass"}, "area", "building"),  # priority
    ({"highway": "residential"}, "line", "road"),
    ({"highway": "residential", "tunnel": "yes"}, "line", None),
    ({"highway": "footway"}, "line", "path"),
    ({"railway": "rail"}, "line", "railway"),
    ({"waterway": "river"}, "line", "water"),
    ({"natural": "water"}, "area", "water"),
    ({"landuse": "forest"}, "area", "woodland"),
    ({"leisure": "park"}, "area", "grass"),
    ({"landuse": "farmland"}, "area", "farmland"),
    ({"amenity": "parking"}, "area", "impervious"),
    ({"natural": "beach"}, "area", "bare"),
    ({"natural": "wetland"}, "area", "wetland"),
    ({"building": "no"}, "area", None),
    ({"highway": "residential"}, "area", None),
    ({"shop": "bakery"}, "area", None),
])
def test_tag_rules(schema, tags, kind, expected):
    got = schema.classify(tags, kind)
    assert (got and schema.by_id(got.class_id).name) == (expected if expected else None) or (
        got is None and expected is None)


def test_road_widths(schema):
    assert schema.classify({"highway": "primary"}, "line").width_m == 10.0
    assert schema.classify({"highway": "primary", "lanes": "4"}, "line").width_m == pytest.approx(13.0)
    assert schema.classify({"highway": "primary", "width": "7.5 m"}, "line").width_m == 7.5
    assert schema.classify({"highway": "service"}, "line").width_m == 4.0


def test_length_parsing():
    assert parse_length_m("12") == 12
    assert parse_length_m("12.5 m") == 12.5
    assert parse_length_m("40 ft") == pytest.approx(12.192)
    assert parse_length_m("tall") is None


_KEYS = ["building", "highway", "landuse", "natural", "leisure", "amenity", "waterway", "railway", "tunnel",
         "area", "covered", "water", "place", "aeroway"]
_VALUES = ["yes", "no", "residential", "primary", "footway", "forest", "water", "park", "parking", "river", "rail",
           "grass", "beach", "wetland", "farmland", "square", "apron", "platform", "house"]


@settings(max_examples=300, deadline=None)
@given(tags=st.dictionaries(st.sampled_from(_KEYS), st.sampled_from(_VALUES), max_size=5),
       kind=st.sampled_from(["area", "line"]))
def test_every_tag_combination_maps_to_exactly_one_class(schema, tags, kind):
    got = schema.classify(tags, kind)
    matching = [r for r in schema.rules if r.matches(tags, kind)]
    if not matching:
        assert got is None
    else:
        top = max(schema.by_name(r.class_name).priority for r in matching)
        winners = {r.class_name for r in matching if schema.by_name(r.class_name).priority == top}
        assert len(winners) == 1  # priorities are unique: no ties possible
        assert schema.by_id(got.class_id).name in winners


def test_priorities_are_unique(schema):
    prios = [c.priority for c in schema.classes]
    assert len(set(prios)) == len(prios)


def test_user_rules_file(tmp_path):
    from geogan.classes import default_rules_text
    text = default_rules_text().replace('name = "building"\ncolor = [214, 39, 40]',
                                        'name = "building"\ncolor = [1, 2, 3]')
    p = tmp_path / "rules.toml"
    p.write_text(text)
    assert load_schema(p).by_name("building").color == (1, 2, 3)


@pytest.mark.parametrize("text,msg", [
    ("classes = [", "not valid TOML"),
    ("x = 1", "no \\[\\[classes\\]\\]"),
    ('[[classes]]\nid = 0\nname = "water"\ncolor = [0,0,0]\npriority = 0', "class 0 must be 'background'"),
    ('[[classes]]\nid = 0\nname = "background"\ncolor = [0,0,0]\npriority = 0\n'
     '[[rules]]\nclass = "nope"\nmatch = {a = "b"}', "not one of the schema classes"),
])
def test_bad_rules_files(tmp_path, text, msg):
    p = tmp_path / "rules.toml"
    p.write_text(text)
    with pytest.raises(RulesError, match=msg):
        load_schema(p)
    with pytest.raises(RulesError, match="does not exist"):
        load_schema(tmp_path / "missing.toml")


def test_rule_index_classifies_exactly_like_trying_every_rule():
    """classify tries only the rules whose first key the tags have; on every feature of the sample town (areas
    and lines) and on tag sets made to hit several rules at once, the result is the one trying every rule in
    order gives (highest priority, the first of equal priority)."""
    from geogan.api import sample_osm_path
    from geogan.classes import Classified, load_schema
    from geogan.sources import read_sources

    schema = load_schema()

    def every_rule(tags, kind):  # the definition: of all matching rules, the first of the highest priority
        matching = [rule for rule in schema.rules if rule.matches(tags, kind)]
        if not matching:
            return None
        def priority(r):  # a rule's own priority, else its class's
            return r.priority if r.priority is not None else schema.by_name(r.class_name).priority

        rule = max(matching, key=priority)  # max keeps the first of ties
        cdef = schema.by_name(rule.class_name)
        if rule.crown:
            return Classified(cdef.id, priority(rule), schema.crown_diameter_m(tags), crown=True)
        return Classified(cdef.id, priority(rule), schema.line_width_m(rule, tags) if kind == "line" else None)

    report = read_sources([sample_osm_path()], None)
    cases = [(tags, "area" if layer.source.endswith("multipolygons") else "line")
             for layer in report.layers for tags in layer.tags]
    keys = sorted({k for rule in schema.rules for k, _ in rule.match})
    values = sorted({v for rule in schema.rules for _, vs in rule.match for v in vs})
    import random
    rng = random.Random(0)
    for _ in range(2000):  # random mixtures of the keys and values the rules name
        tags = {k: rng.choice(values + ["no", "yes"]) for k in rng.sample(keys, rng.randint(1, 4))}
        cases.append((tags, rng.choice(["area", "line"])))
    assert len(cases) > 2000 and sum(every_rule(t, k) is not None for t, k in cases) > 500
    for tags, kind in cases:
        assert schema.classify(tags, kind) == every_rule(tags, kind), (tags, kind)
