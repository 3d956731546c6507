"""Categories from VIA region attributes: which attribute labels regions, and its values.

VIA has no notion of a class; users put it in a region attribute (a dropdown ``Name`` in the
drinks set, a text ``name`` in VIA's own demo). One attribute is chosen: ``--label-attr``, else
the only dropdown/radio attribute defined, else the only attribute holding text in the regions.
Dropdown/radio values are option ids ("1") and map to option labels ("Water").
"""

from __future__ import annotations

from segcli.errors import SegcliError
from segcli.ledger import Ledger
from segcli.structures import Category

CHOICE_TYPES = ("dropdown", "radio")


def pick_label_attr(region_attrs: list[dict], region_defs: dict, requested: str | None,
                    ledger: Ledger, default_category: str) -> str | None:
    """Choose the labelling attribute.

    Args:
        region_attrs: every region's ``region_attributes``.
        region_defs: VIA ``_via_attributes["region"]`` (may be empty).
        requested: ``--label-attr``, if given.
        ledger: where an ambiguous choice is recorded.
        default_category: named in the ambiguity message.

    Returns:
        The attribute name, or None when regions get the default category.
    """
    used = {key for attrs in region_attrs for key, value in attrs.items() if _is_label_value(value)}
    if requested is not None:
        if requested not in used and requested not in region_defs:
            known = sorted({k for attrs in region_attrs for k in attrs} | set(region_defs))
            raise SegcliError(f"--label-attr {requested!r}: no region has this attribute "
                              f"(region attributes: {', '.join(known) or 'none'})", ledger.file)
        return requested
    choices = [name for name, d in region_defs.items() if d.get("type") in CHOICE_TYPES]
    if len(choices) == 1:
        return choices[0]
    candidates = sorted(used & set(choices)) if len(choices) > 1 else sorted(used)
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        ledger.add("defaulted", f"several region attributes could be the class ({', '.join(candidates)}): "
                   f"every region gets category '{default_category}'; choose one with --label-attr")
    return None


def _is_label_value(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, dict) and sum(1 for v in value.values() if v) == 1


def label_of_region(attrs: dict, attr: str | None, definition: dict | None) -> str | None:
    """The category name a region's attributes give, or None (no or empty value)."""
    if attr is None or attr not in attrs or not _is_label_value(attrs[attr]):
        return None
    value = attrs[attr]
    if isinstance(value, dict):  # checkbox {"option_id": true}
        value = next(k for k, v in value.items() if v)
    value = str(value).strip()
    options = (definition or {}).get("options") or {}
    label = options.get(value, value) if isinstance(options, dict) else value
    return str(label).strip() or value


def categories_for_labels(labels: list[str], definition: dict | None) -> list[Category]:
    """Categories with ids 1..N: the attribute's options in their order (used or not, so that
    train and val files get the same ids), then other labels in sorted order."""
    options = (definition or {}).get("options") or {}
    names = [str(label).strip() for label in options.values()] if isinstance(options, dict) else []
    names = list(dict.fromkeys(n for n in names if n))
    names += sorted(set(labels) - set(names))
    return [Category(id=i, name=name) for i, name in enumerate(names, start=1)]


def option_ids_by_label(definition: dict | None) -> dict[str, str]:
    """Inverse of the option mapping: label -> the first option id with that label (built
    once: a scan of the options per region was quadratic with 200,000 categories)."""
    options = (definition or {}).get("options") or {}
    inverse: dict[str, str] = {}
    for option_id, option_label in options.items() if isinstance(options, dict) else ():
        inverse.setdefault(str(option_label).strip(), option_id)
    return inverse


def option_id_for_label(definition: dict | None, label: str) -> str:
    """The option id whose label is ``label`` (else the label itself)."""
    return option_ids_by_label(definition).get(label, label)


def unreadable_label_problem(names: list[str]) -> str | None:
    """Why category ``names`` would not read back from VIA region attributes (labels are read
    stripped of surrounding spaces, and a blank one is no label), or None."""
    by_stripped: dict[str, str] = {}
    for name in names:
        key = name.strip()
        if not key:
            return f"category name {name!r} is blank: a VIA region with it would read back unlabelled"
        if key in by_stripped:
            return (f"category names {by_stripped[key]!r} and {name!r} differ only in surrounding spaces, "
                    "which VIA labels are read without: the two would merge (rename one)")
        by_stripped[key] = name
    return None


def match_class_names(names: list[str], known: list[str]) -> list[int | None]:
    """For each of ``names``, the position in ``known`` of the class it names: the same name,
    else the same name ignoring case (one tool writes 'Car', another 'car'); None when none is.
    The one matcher of class names between a model, predictions and a ground truth."""
    exact = {name: k for k, name in reversed(list(enumerate(known)))}
    folded = {name.casefold(): k for k, name in reversed(list(enumerate(known)))}
    return [exact.get(name, folded.get(name.casefold())) for name in names]

