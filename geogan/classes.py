"""The class schema: classes, palette, drawing priority and OSM tag rules.

The schema is data (``geogan/data/classes.toml``); this module loads and
validates it and answers one question per feature: which class does this
tag set (on an area or a line) belong to, and how wide is it in metres.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping

from .errors import RulesError

GEOMETRY_KINDS = ("area", "line", "point", "any")


@dataclass(frozen=True)
class ClassDef:
    id: int
    name: str
    color: tuple[int, int, int]
    priority: int
    description: str = ""


@dataclass(frozen=True)
class Rule:
    class_name: str
    geometry: str
    match: tuple[tuple[str, tuple[str, ...]], ...]
    exclude: tuple[tuple[str, tuple[str, ...]], ...] = ()
    width_key: str | None = None
    width_m: float | None = None
    priority: int | None = None  # drawing priority of its features (None: the class's)
    crown: bool = False  # a tree: drawn as its crown (diameter_crown / circumference, else a default)

    def matches(self, tags: Mapping[str, str], kind: str) -> bool:
        if self.geometry != "any" and self.geometry != kind:
            return False
        if not all(_tag_fits(tags.get(k), values) for k, values in self.match):
            return False
        return not any(_tag_fits(tags.get(k), values) for k, values in self.exclude)


def _tag_fits(value: str | None, allowed: tuple[str, ...]) -> bool:
    if value is None:
        return False
    if allowed == ("*",):
        return value != "no"
    return value in allowed


@dataclass(frozen=True)
class Classified:
    """The result of classifying one feature."""

    class_id: int
    priority: int
    width_m: float | None  # lines: their width; points: their diameter (tree crowns)
    crown: bool = False  # a tree (see Rule.crown)


@dataclass(frozen=True)
class Schema:
    version: int
    classes: tuple[ClassDef, ...]
    rules: tuple[Rule, ...]
    line_widths_m: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    default_line_width_m: Mapping[str, float] = field(default_factory=dict)
    lane_width_m: float = 3.25
    source: str = "builtin"
    sea_class: str | None = "water"  # class of the sea built from natural=coastline (None: no sea)
    sea_priority: int = 1  # under every land feature
    tree_crown_m: float = 6.0  # crown diameter of a tree without diameter_crown / circumference
    tree_height_m: float = 10.0  # height of a tree without a height tag

    # ------------------------------------------------------------ lookups
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @cached_property
    def _class_by_name(self) -> dict[str, ClassDef]:
        return {c.name: c for c in self.classes}

    def by_name(self, name: str) -> ClassDef:
        found = self._class_by_name.get(name)
        if found is not None:
            return found
        raise RulesError(f"unknown class '{name}'; known classes: {', '.join(self.names)}")

    def by_id(self, class_id: int) -> ClassDef:
        if 0 <= class_id < len(self.classes):
            return self.classes[class_id]
        raise RulesError(f"unknown class id {class_id}; ids run 0..{len(self.classes) - 1}")

    def lookup(self, value: object) -> ClassDef:
        """A class from a name or an id (as found in a user's class field)."""
        if isinstance(value, (int,)) or (isinstance(value, float) and float(value).is_integer()):
            return self.by_id(int(value))
        text = str(value).strip()
        if text.isdigit():
            return self.by_id(int(text))
        return self.by_name(text.lower())

    def palette(self) -> dict[int, tuple[int, int, int, int]]:
        return {c.id: (*c.color, 255) for c in self.classes}

    # ------------------------------------------------------------ classify
    def classify(self, tags: Mapping[str, str], kind: str) -> Classified | None:
        """Class of a feature with OSM ``tags`` and geometry ``kind``.

        Returns the highest-priority matching rule's class (a rule's own ``priority``, else its
        class's), or None when no rule matches (the feature is not drawn; the ground stays background).
        """
        best: tuple[Rule, ClassDef] | None = None
        by_key, always = self._rule_index
        order = [i for key in tags for i in by_key.get(key, ())]  # only rules whose first key the tags have
        order.extend(always)
        order.sort()  # the schema's order: the first of equal priority wins
        best_priority = 0
        for rule in (self.rules[i] for i in order):
            if rule.matches(tags, kind):
                cdef = self.by_name(rule.class_name)
                priority = rule.priority if rule.priority is not None else cdef.priority
                if best is None or priority > best_priority:
                    best, best_priority = (rule, cdef), priority
        if best is None:
            return None
        rule, cdef = best
        priority = best_priority
        if rule.crown:
            return Classified(cdef.id, priority, self.crown_diameter_m(tags), crown=True)
        width = self.line_width_m(rule, tags) if kind == "line" else None
        return Classified(cdef.id, priority, width)

    def crown_diameter_m(self, tags: Mapping[str, str]) -> float:
        """A tree's crown diameter: ``diameter_crown``, else from the trunk's ``circumference`` (about 20
        trunk diameters, 2..30 m), else ``tree_crown_m``."""
        crown = parse_length_m(tags.get("diameter_crown"))
        if crown is not None and 0 < crown <= 60:
            return crown
        trunk = parse_length_m(tags.get("circumference"))
        if trunk is not None and 0 < trunk <= 30:
            return min(30.0, max(2.0, CROWN_PER_TRUNK_DIAMETER * trunk / math.pi))
        return self.tree_crown_m

    @cached_property
    def _rule_index(self) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
        """Rule positions by the key of their first match condition (a rule can only match tags that have
        it), and the positions of rules without conditions. Classifying a feature then tries a few rules
        instead of all (8,020 features of 20 sample towns side by side: 0.11 s -> 0.022 s)."""
        by_key: dict[str, list[int]] = {}
        always: list[int] = []
        for i, rule in enumerate(self.rules):
            if rule.match:
                by_key.setdefault(rule.match[0][0], []).append(i)
            else:
                always.append(i)
        return {k: tuple(v) for k, v in by_key.items()}, tuple(always)

    def classify_by_value(self, value: object, kind: str) -> Classified | None:
        """Class of a feature from a user class field (name or id)."""
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
            return None
        cdef = self.lookup(value)
        width = None
        if kind == "line":
            width = float(self.default_line_width_m.get(cdef.name, 4.0))
        return Classified(cdef.id, cdef.priority, width)

    def sea(self) -> Classified | None:
        """How the sea is drawn (:mod:`geogan.coastline`): its class at ``sea_priority``, or None."""
        if self.sea_class is None:
            return None
        return Classified(self.by_name(self.sea_class).id, self.sea_priority, None)

    def line_width_m(self, rule: Rule, tags: Mapping[str, str]) -> float:
        width = parse_length_m(tags.get("width"))
        if width is not None and width > 0:
            return width
        lanes = parse_number(tags.get("lanes"))
        if lanes is not None and lanes > 0:
            return lanes * self.lane_width_m
        if rule.width_key is not None:
            table = self.line_widths_m.get(rule.width_key, {})
            value = tags.get(rule.width_key)
            if value in table:
                return float(table[value])
        return float(rule.width_m if rule.width_m is not None else 4.0)


# Crown diameter per trunk diameter of open-grown and street trees (about 15..25 in the literature).
CROWN_PER_TRUNK_DIAMETER = 20.0

_NUMBER = re.compile(r"^\s*([-+]?\d+(?:[.,]\d+)?)\s*([a-zA-Z']*)\s*$")


def parse_number(text: object) -> float | None:
    if text is None:
        return None
    m = _NUMBER.match(str(text))
    if not m:
        return None
    return float(m.group(1).replace(",", "."))


def parse_length_m(text: object) -> float | None:
    """Parse an OSM length ("12", "12 m", "40 ft", "12'") to metres."""
    if text is None:
        return None
    m = _NUMBER.match(str(text))
    if not m:
        return None
    value = float(m.group(1).replace(",", "."))
    unit = m.group(2).lower()
    if unit in ("", "m", "meter", "meters", "metre", "metres"):
        return value
    if unit in ("ft", "feet", "'"):
        return value * 0.3048
    if unit == "km":
        return value * 1000.0
    return None


# ---------------------------------------------------------------- loading
def _as_values(key: str, value: object, where: str) -> tuple[str, tuple[str, ...]]:
    if isinstance(value, str):
        return key, (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return key, tuple(value)
    raise RulesError(f"{where}: tag '{key}' must be a string or a list of strings; fix the rules file")


def parse_schema(data: Mapping, source: str = "<rules>") -> Schema:
    """Validate a parsed rules document and build a :class:`Schema`."""
    try:
        raw_classes = data["classes"]
    except KeyError:
        raise RulesError(f"{source}: no [[classes]] table; start from geogan's default rules (geogan classes --dump)") from None
    classes = []
    for i, c in enumerate(raw_classes):
        try:
            cdef = ClassDef(int(c["id"]), str(c["name"]), tuple(int(v) for v in c["color"]),  # type: ignore[arg-type]
                            int(c["priority"]), str(c.get("description", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise RulesError(f"{source}: class #{i} needs id, name, color [r,g,b] and priority ({exc})") from None
        if cdef.id != i:
            raise RulesError(f"{source}: class ids must run 0,1,2,... in order; got {cdef.id} at position {i}")
        if len(cdef.color) != 3 or not all(0 <= v <= 255 for v in cdef.color):
            raise RulesError(f"{source}: class '{cdef.name}' color must be three values 0-255")
        classes.append(cdef)
    if not classes or classes[0].name != "background":
        raise RulesError(f"{source}: class 0 must be 'background'")
    if len(classes) > 255:
        raise RulesError(f"{source}: at most 255 classes fit a uint8 class map")
    names = {c.name for c in classes}
    if len(names) != len(classes):
        raise RulesError(f"{source}: class names must be unique")
    rules = []
    for i, r in enumerate(data.get("rules", [])):
        where = f"{source}: rule #{i}"
        cname = r.get("class")
        if cname not in names:
            raise RulesError(f"{where}: class '{cname}' is not one of the schema classes")
        geometry = r.get("geometry", "any")
        if geometry not in GEOMETRY_KINDS:
            raise RulesError(f"{where}: geometry must be one of {', '.join(GEOMETRY_KINDS)}, not '{geometry}'")
        match = r.get("match")
        if not isinstance(match, dict) or not match:
            raise RulesError(f"{where}: 'match' must be a non-empty table of tag = value(s)")
        exclude = r.get("exclude", {})
        rules.append(Rule(
            class_name=cname,
            geometry=geometry,
            match=tuple(_as_values(k, v, where) for k, v in match.items()),
            exclude=tuple(_as_values(k, v, where) for k, v in exclude.items()),
            width_key=r.get("width_key"),
            width_m=float(r["width_m"]) if "width_m" in r else None,
            priority=_rule_priority(r, where),
            crown=_rule_crown(r, where),
        ))
    widths = {k: {kk: float(vv) for kk, vv in v.items()} for k, v in data.get("line_widths_m", {}).items()}
    defaults = {k: float(v) for k, v in data.get("default_line_width_m", {}).items()}
    sea_class, sea_priority = _sea(data, names, source)
    trees = data.get("trees", {})
    return Schema(int(data.get("schema_version", 1)), tuple(classes), tuple(rules), widths, defaults,
                  float(data.get("lane_width_m", 3.25)), source, sea_class, sea_priority,
                  _positive_m(trees, "crown_m", 6.0, source), _positive_m(trees, "height_m", 10.0, source))


def _rule_priority(rule: Mapping, where: str) -> int | None:
    if "priority" not in rule:
        return None
    value = rule["priority"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RulesError(f"{where}: priority must be a whole number, not {value!r}")
    return value


def _rule_crown(rule: Mapping, where: str) -> bool:
    value = rule.get("crown", False)
    if not isinstance(value, bool):
        raise RulesError(f"{where}: crown must be true or false, not {value!r}")
    return value


def _sea(data: Mapping, names: set[str], source: str) -> tuple[str | None, int]:
    """The [sea] table: the class (default "water" when the schema has it; "" for no sea) and priority."""
    sea = data.get("sea", {})
    if not isinstance(sea, dict):
        raise RulesError(f"{source}: [sea] must be a table with class and priority")
    name = sea.get("class", "water" if "water" in names else "")
    if name and name not in names:
        raise RulesError(f"{source}: [sea] class '{name}' is not one of the schema classes")
    priority = sea.get("priority", 1)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RulesError(f"{source}: [sea] priority must be a whole number, not {priority!r}")
    return (name or None), priority


def _positive_m(table: Mapping, key: str, default: float, source: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < float(value) < 1000):
        raise RulesError(f"{source}: [trees] {key} must be a positive number of metres, not {value!r}")
    return float(value)


def default_rules_text() -> str:
    return resources.files("geogan").joinpath("data/classes.toml").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _default_schema() -> Schema:
    return parse_schema(tomllib.loads(default_rules_text()), "builtin classes.toml")


def load_schema(path: str | Path | None = None) -> Schema:
    """Load the class schema: the built-in one, or a user's rules TOML file."""
    if path is None:
        return _default_schema()
    path = Path(path)
    if not path.is_file():
        raise RulesError(f"rules file '{path}' does not exist; pass an existing TOML file to --rules")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError(f"rules file '{path}' is not valid TOML ({exc}); fix the syntax") from None
    return parse_schema(data, str(path))
