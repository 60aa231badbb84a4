"""Building blocks shared by every API group: the pydantic base classes, CRD metadata, the
Kubernetes scalar types (int32, Quantity, base64 bytes, free-form objects) and the few
``meta/v1`` types the Clusternet kinds embed.

The models are the single source of truth: :mod:`clusternet.apis.crdgen` turns their JSON
schema into the CRDs under ``manifests/crds``.  Field docstrings become CRD descriptions
(``kubectl explain``), so they are written for users.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


class KubeModel(BaseModel):
    """Base of every API struct: camelCase JSON names, unknown fields rejected.

    Unknown fields are an error rather than silently dropped, mirroring what the apiserver's
    pruning would do to them anyway, but loudly (a typo in ``subscribers`` must not vanish).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset (``None``) fields omitted like Go's omitempty."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SchemaExtension:
    """Adds keys (``format``, ``x-kubernetes-*``, CEL rules) to the JSON schema of a type.

    Used inside ``Annotated[...]`` so constraints declared with ``Field`` still compose.
    """

    def __init__(self, **keys: Any) -> None:
        self.keys = keys

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.keys)
        return schema


def cel(rule: str, message: str) -> JsonDict:
    """One ``x-kubernetes-validations`` entry, enforced by kube-apiserver."""
    return {"rule": rule, "message": message}


# --- scalars -------------------------------------------------------------------------------

# Only the format is recorded: a validator here would stop pydantic from folding field-level
# bounds (ge/le) into the schema, and the apiserver checks the bounds that matter.
Int32 = Annotated[int, SchemaExtension(format="int32")]
Int64 = Annotated[int, SchemaExtension(format="int64")]

# Same grammar as k8s.io/apimachinery resource.Quantity (and the pattern controller-gen emits).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 16Gi)")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
ResourceList = dict[str, Quantity]


def _decode_base64(value: Any) -> Any:
    # Strings come from the wire (JSON has no bytes); Python callers pass bytes directly.
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    return value


Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    # b64encode, not pydantic's Base64Bytes: that one inserts newlines every 76 characters.
    PlainSerializer(lambda raw: base64.b64encode(raw).decode("ascii"), when_used="json"),
    WithJsonSchema({"type": "string", "format": "byte"}),
]
"""A Go ``[]byte``: base64 on the wire, raw bytes in Python."""

FreeFormObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A ``runtime.RawExtension``-like object the apiserver must store without pruning."""

Time = datetime
"""``metav1.Time``: RFC 3339 on the wire (``format: date-time``)."""


# --- CRD metadata ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0
    """0 shows by default; anything higher only with ``kubectl get -o wide``."""


AGE_COLUMN = PrinterColumn("AGE", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class CRDInfo:
    group: str
    version: str
    kind: str
    plural: str
    scope: Literal["Namespaced", "Cluster"]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = (AGE_COLUMN,)
    status_subresource: bool = False
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"


# --- meta/v1 --------------------------------------------------------------------------------


class OwnerReference(KubeModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(KubeModel):
    """The subset of ``metav1.ObjectMeta`` controllers read; other keys are kept verbatim."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    owner_references: list[OwnerReference] | None = None


class KubeObject(KubeModel):
    """A top-level kind.  Subclasses set :attr:`crd`; apiVersion/kind default from it."""

    crd: ClassVar[CRDInfo]

    api_version: str = ""
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="after")
    def _type_meta(self) -> Self:
        self.api_version = self.api_version or self.crd.api_version
        self.kind = self.kind or self.crd.kind
        if (self.api_version, self.kind) != (self.crd.api_version, self.crd.kind):
            raise ValueError(
                f"expected {self.crd.api_version}/{self.crd.kind}, "
                f"got {self.api_version}/{self.kind}"
            )
        return self


class LabelSelectorRequirement(KubeModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(KubeModel):
    """A label query; an empty selector matches everything."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(KubeModel):
    """A standard condition (metav1.Condition), validated like the built-in types do."""

    type: Annotated[
        str,
        Field(
            max_length=316,
            pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        ),
    ]
    status: ConditionStatus
    observed_generation: Annotated[Int64, Field(ge=0)] | None = None
    last_transition_time: Time
    reason: Annotated[
        str,
        Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
    ]
    message: Annotated[str, Field(max_length=32768)]
