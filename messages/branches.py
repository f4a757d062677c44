"""Which branches of a template its variants show, and which none does.

A template's wording depends on its variables: `{% if late %}` adds an apology, `{% if
days_before == 0 %} ... {% elif %} ... {% else %}` says today, tomorrow or in N days. The IRB
approves what the review packet shows, so the packet must show every branch. Here a template is
compiled once more with a marker in every branch (each `if`, `elif` and `else`; the implicit
"nothing" of an `if` that has neither `elif` nor `else`, an optional part of the message; both
sides of an inline `a if c else b`; the body of every `{% for %}` and its `{% else %}`), rendered with every variant (`messages.variants`) and every
button sample, as the previews and the packet render it, and the markers never reached are the
branches no variant shows. `trialbot messages lint` reports them.

The instrumented copy is for this check only: it is never sent, and the renderer never sees it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.environment import Environment

from messages.catalog import Catalog, TemplateSpec
from messages.variants import Variant, button_variants, values_for, variants_of

_MARK = "_branch_taken"  # the marker function's name in the instrumented template's context


@dataclass(frozen=True)
class Branch:
    line: int
    statement: str  # the branch's statement, as near as it can be written back: `{% if late %}`
    missing: str  # what no variant does, for people: "makes it false"

    def __str__(self) -> str:
        return f"line {self.line} `{self.statement}`: no variant {self.missing}"


_OPERATORS = {"eq": "==", "ne": "!=", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<=", "in": "in", "notin": "not in"}


def expression(node: nodes.Node | None) -> str:
    """A condition written back as a template author would recognise it (`t.get("flags")`,
    `days_before == 0`); `...` for what it does not know how to write."""
    match node:
        case None:
            return ""
        case nodes.Name():
            return node.name
        case nodes.Const():
            return '"' + node.value + '"' if isinstance(node.value, str) else repr(node.value).lower()
        case nodes.Getattr():
            return f"{expression(node.node)}.{node.attr}"
        case nodes.Getitem():
            return f"{expression(node.node)}[{expression(node.arg)}]"
        case nodes.Call():
            args = [expression(a) for a in node.args] + [f"{k.key}={expression(k.value)}" for k in node.kwargs]
            return f"{expression(node.node)}({', '.join(args)})"
        case nodes.Not():
            return f"not {expression(node.node)}"
        case nodes.And() | nodes.Or():
            word = "and" if isinstance(node, nodes.And) else "or"
            return f"{expression(node.left)} {word} {expression(node.right)}"
        case nodes.Compare():
            rest = " ".join(f"{_OPERATORS.get(op.op, op.op)} {expression(op.expr)}" for op in node.ops)
            return f"{expression(node.expr)} {rest}"
        case nodes.Test():
            return f"{expression(node.node)} is {node.name}"
        case nodes.Filter():
            return f"{expression(node.node)} | {node.name}"
        case nodes.Tuple():
            return "(" + ", ".join(expression(item) for item in node.items) + ")"
        case nodes.List():
            return "[" + ", ".join(expression(item) for item in node.items) + "]"
    return "..."


class BranchRecorder:
    """One template's source compiled with a marker in each branch; `render` records the branches
    a set of variables reaches, `untaken` lists the others."""

    def __init__(self, environment: Environment, source: str) -> None:
        self.branches: list[Branch] = []
        self.taken: set[int] = set()
        ast = environment.parse(source)
        self._instrument(ast)
        self.blocks = {block.name for block in ast.find_all(nodes.Block)}
        self._template = environment.from_string(ast)

    def render(self, block: str, variables: Mapping[str, Any]) -> str | None:
        """Render one block (its words are the template's own: the markers add none). A failure is
        not this check's to report (lint renders every variant itself): None, and the branches
        reached before it still count."""
        render = self._template.blocks.get(block)
        if render is None:
            return None
        try:
            return "".join(render(self._template.new_context({**variables, _MARK: self._mark})))
        except Exception:  # noqa: BLE001 - see the docstring
            return None

    def untaken(self) -> list[Branch]:
        return sorted((b for i, b in enumerate(self.branches) if i not in self.taken), key=lambda b: b.line)

    # -- instrumenting ------------------------------------------------------------------------

    def _mark(self, branch: int, value: Any = "") -> Any:
        self.taken.add(branch)
        return value

    def _branch(self, node: nodes.Node, statement: str, missing: str) -> int:
        self.branches.append(Branch(node.lineno or 0, statement, missing))
        return len(self.branches) - 1

    def _call(self, branch: int, lineno: int, value: nodes.Expr | None = None) -> nodes.Call:
        args: list[nodes.Expr] = [nodes.Const(branch)]
        if value is not None:
            args.append(value)
        call = nodes.Call(nodes.Name(_MARK, "load"), args, [], None, None)
        call.set_lineno(lineno)
        return call

    def _marker(self, branch: int, lineno: int) -> nodes.Output:
        output = nodes.Output([self._call(branch, lineno)])
        output.set_lineno(lineno)
        return output

    def _instrument(self, ast: nodes.Template) -> None:
        ifs = list(ast.find_all(nodes.If))
        elifs = {id(e) for node in ifs for e in node.elif_}
        for node in ifs:
            if id(node) in elifs:
                continue  # instrumented as a branch of its `if`
            line, statement = node.lineno, f"{{% if {expression(node.test)} %}}"
            node.body.insert(0, self._marker(self._branch(node, statement, "makes it true"), line))
            for elif_ in node.elif_:
                branch = self._branch(elif_, f"{{% elif {expression(elif_.test)} %}}", "takes this branch")
                elif_.body.insert(0, self._marker(branch, elif_.lineno))
            if node.else_:
                missing = "leaves all its conditions false" if node.elif_ else "makes it false"
                node.else_.insert(0, self._marker(self._branch(node, statement, missing), line))
            elif not node.elif_:
                # An optional part: the message is also shown without it. (A chain of `elif`s
                # without `else` names its cases; "none of them" is not a wording to show.)
                node.else_.append(self._marker(self._branch(node, statement, "makes it false (to show the "
                                                            "message without this part)"), line))
        for loop in list(ast.find_all(nodes.For)):
            line = loop.lineno
            statement = f"{{% for {expression(loop.target)} in {expression(loop.iter)} %}}"
            loop.body.insert(0, self._marker(self._branch(loop, statement, "has an item for this loop"), line))
            if loop.else_:
                branch = self._branch(loop, statement, "has nothing for this loop (its {% else %})")
                loop.else_.insert(0, self._marker(branch, line))
        for expr in list(ast.find_all(nodes.CondExpr)):
            line, statement = expr.lineno, f"... if {expression(expr.test)} else ..."
            expr.expr1 = self._call(self._branch(expr, statement, "makes it true"), line, expr.expr1)
            expr.expr2 = self._call(self._branch(expr, statement, "makes it false"), line,
                                    expr.expr2 if expr.expr2 is not None else nodes.Const(""))


def _runs(catalog: Catalog, spec: TemplateSpec, listed: Mapping[str, tuple[Variant, ...]],
          blocks: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (block, variables) the previews and the review packet render for this template."""
    if spec.kind == "message":
        for variant in variants_of(spec.id, listed):
            values = values_for(catalog, spec, variant)
            yield "text", values
            for name in spec.buttons:
                for sample in button_variants(spec, name):
                    yield f"button_{name}", {**values, **sample}
        return
    for block in sorted(blocks):
        yield block, {}  # labels, commands and figure words are shown without variables
    if spec.kind == "labels":
        # A shared label is drawn on other messages' buttons, with their variables.
        for other in catalog.templates.values():
            if other.kind != "message":
                continue
            for name in other.buttons:
                if f"button_{name}" not in blocks:
                    continue
                for variant in variants_of(other.id, listed):
                    values = values_for(catalog, other, variant)
                    for sample in button_variants(other, name):
                        yield f"button_{name}", {**values, **sample}


def untaken_branches(catalog: Catalog, environment: Environment, spec: TemplateSpec, language: str,
                     listed: Mapping[str, tuple[Variant, ...]]) -> list[Branch]:
    """The branches of `spec`'s template in `language` that no variant (nor button sample) reaches."""
    source = catalog.path(spec.id, language).read_text(encoding="utf-8")
    recorder = BranchRecorder(environment, source)
    for block, variables in _runs(catalog, spec, listed, recorder.blocks):
        recorder.render(block, variables)
    return recorder.untaken()
