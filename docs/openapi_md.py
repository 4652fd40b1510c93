"""The API reference page, rendered from the OpenAPI document the API serves (docs/hooks.py calls it at
build time): every operation with its parameters, body and answers, then every schema. Nothing here
describes a route by hand; a route or field added to the document appears on the next build."""
from __future__ import annotations

import re
from pathlib import Path

METHODS = ("get", "head", "post", "put", "patch", "delete")


def load_spec(root: Path) -> dict:
    """The document as the API serves it: api/openapi.yaml where the repository has it, else api.openapi.SPEC."""
    path = root / "api" / "openapi.yaml"
    if path.exists():
        import yaml

        return yaml.safe_load(path.read_text(encoding="utf-8"))
    from api.openapi import SPEC

    return SPEC


def _cell(text) -> str:
    """Text fit for a table cell: one line, pipes escaped."""
    return re.sub(r"\s+", " ", str(text)).replace("|", "\\|").strip()


def _anchor(name: str) -> str:
    return "schema-" + name.lower()


def type_of(schema: dict | None) -> str:
    """A schema's type in a few words, with a link to a named schema."""
    if not schema:
        return ""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kinds = schema.get("type", "object" if "properties" in schema else "")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    words = []
    for kind in kinds:
        if kind == "array":
            words.append(f"array of {type_of(schema.get('items')) or 'anything'}")
        elif kind:
            words.append(kind + (f" ({schema['format']})" if "format" in schema and kind != "null" else ""))
    bounds = [f"{word} {schema[key]}" for key, word in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"),
                                                        ("maxLength", "length ≤"), ("minItems", "items ≥"),
                                                        ("maxItems", "items ≤")) if key in schema]
    if "pattern" in schema:
        bounds.append(f"matching `{schema['pattern']}`")
    return " or ".join(words) + (f" ({', '.join(bounds)})" if bounds else "")


def _fields(schema: dict, prefix: str = "") -> list[tuple[str, dict, bool]]:
    """(dotted name, schema, required) of an object's fields, and of the fields of objects inside it
    (`progress.percent`, `errors[].code`)."""
    required = set(schema.get("required", ()))
    out = []
    for name, sub in (schema.get("properties") or {}).items():
        out.append((prefix + name, sub, name in required))
        if "properties" in sub:
            out += _fields(sub, f"{prefix}{name}.")
        elif isinstance(sub.get("items"), dict) and "properties" in sub["items"]:
            out += _fields(sub["items"], f"{prefix}{name}[].")
    return out


def _properties(schema: dict) -> list[str]:
    fields = _fields(schema)
    if not fields:
        return []
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, sub, required in fields:
        rows.append(f"| `{name}` | {_cell(type_of(sub))} | {'yes' if required else ''} | "
                    f"{_cell(sub.get('description', ''))} |")
    return rows


def _operation(path: str, method: str, op: dict) -> list[str]:
    lines = [f"### {method.upper()} `{path}`", "", _cell(op.get("summary", "")) or "(no summary)", ""]
    if op.get("description"):
        lines += [op["description"].strip(), ""]
    lines += ["Needs `Authorization: Bearer <token>`." if op.get("security") else "No token needed.", ""]
    params = op.get("parameters") or []
    if params:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in params:
            lines.append(f"| `{p['name']}` | {p['in']} | {_cell(type_of(p.get('schema')))} | "
                         f"{'yes' if p.get('required') else ''} | {_cell(p.get('description', ''))} |")
        lines.append("")
    body = op.get("requestBody")
    if body:
        lines.append("Request body" + (" (required)" if body.get("required") else " (optional)") + ":")
        lines.append("")
        for ctype, media in (body.get("content") or {}).items():
            schema = media.get("schema") or {}
            lines.append(f"- `{ctype}`: {type_of(schema)}")
            if "properties" in schema and "$ref" not in schema:
                lines += ["", *["    " + row for row in _properties(schema)], ""]
        lines.append("")
    lines += ["| answer | description | body |", "|---|---|---|"]
    for code, resp in (op.get("responses") or {}).items():
        schemas = [type_of(m.get("schema")) for m in (resp.get("content") or {}).values()]
        headers = ", ".join(f"`{h}`" for h in (resp.get("headers") or {}))
        desc = _cell(resp.get("description", "")) + (f" (headers: {headers})" if headers else "")
        lines.append(f"| **{code}** | {desc} | {_cell(', '.join(s for s in schemas if s))} |")
    return lines + [""]


def _inline(spec: dict, node):
    """A parameter, response or body given as a `$ref` to the document's components, as the component itself
    (named schemas stay references: they are linked to their own section)."""
    ref = node.get("$ref", "") if isinstance(node, dict) else ""
    if not ref.startswith("#/components/") or ref.startswith("#/components/schemas/"):
        return node
    out = spec
    for part in ref[2:].split("/"):
        out = out[part]
    return out


def _inlined(spec: dict, op: dict) -> dict:
    op = dict(op)
    op["parameters"] = [_inline(spec, p) for p in op.get("parameters") or []]
    op["responses"] = {code: _inline(spec, r) for code, r in (op.get("responses") or {}).items()}
    if op.get("requestBody"):
        op["requestBody"] = _inline(spec, op["requestBody"])
    return op


def _group(path: str) -> str:
    """Operations are grouped by the path's first segment after /v1 (jobs, items, ...)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["v1"] and len(parts) > 1:
        return parts[1]
    return "service"


def render(spec: dict, source: str = "api/openapi.yaml") -> str:
    info = spec.get("info", {})
    paths = spec.get("paths", {})
    groups: dict[str, list[tuple[str, str, dict]]] = {}
    for path, item in paths.items():
        for method in METHODS:
            if method in item:
                groups.setdefault(_group(path), []).append((path, method, _inlined(spec, item[method])))
    count = sum(len(ops) for ops in groups.values())
    lines = [
        "# API reference",
        "",
        "!!! note \"Generated\"",
        f"    Rendered at build time from the OpenAPI {spec.get('openapi', '')} document the API serves at "
        f"`/v1/openapi.json` (`{source}`): "
        f"{count} operations, {len(spec.get('components', {}).get('schemas', {}))} schemas. "
        "[The API](index.md) explains what each route does and the conventions they share.",
        "",
        f"**{info.get('title', '')}** {info.get('version', '')}: {info.get('description', '')}",
        "",
    ]
    for group in sorted(groups, key=lambda g: (g == "service", g)):
        lines += [f"## {group}", ""]
        for path, method, op in groups[group]:
            lines += _operation(path, method, op)
    lines += ["## Schemas", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        lines += [f"### {name} {{#{_anchor(name)}}}", ""]
        if schema.get("description"):
            lines += [schema["description"], ""]
        rows = _properties(schema)
        lines += (rows or [f"Type: {type_of(schema)}"]) + [""]
    return "\n".join(lines) + "\n"
