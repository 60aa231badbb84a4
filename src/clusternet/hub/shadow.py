"""``shadow/v1alpha1``: every kind of the parent, as templates stored in Manifests (spec §6.1).

Requests ``/apis/shadow/v1alpha1[/namespaces/<ns>]/<plural>[/<name>[/<subresource>]]`` are
authorized against group ``shadow`` (spec §6.4), then served from Manifests in the reserved
namespace through the hub's parent client.  Nothing written here is realised in the parent:
creates are only validated there with a server-side dry run.  See docs/shadow.md.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import unquote

import jsonpatch
import structlog
import yaml
from aiohttp import web

from clusternet.apis import known, naming
from clusternet.hub import shadow_printers
from clusternet.hub.authz import Attributes, verb_for_method
from clusternet.hub.shadow_openapi import OpenAPISchemas
from clusternet.hub.shadow_resources import (
    GROUP,
    GROUP_VERSION,
    PREFIX,
    BadPath,
    ResourceTable,
    ShadowPath,
    ShadowResource,
    api_resource_list,
    parse_path,
)
from clusternet.hub.shadow_templates import (
    MANIFEST_API_VERSION,
    MANIFEST_KIND,
    Object,
    UnsupportedSelector,
    manifest_selector,
    new_manifest,
    replace_template,
    scale_of,
    template_of,
    trim,
    with_replicas,
)
from clusternet.hub.status import status_body, status_response
from clusternet.kube import (
    AlreadyExists,
    ApiError,
    ClusterUnreachable,
    Conflict,
    KubeClient,
    NotFound,
    PatchSchema,
    PatchType,
    Preconditions,
    StrategicPatchError,
    UnknownKind,
    merge_patch,
    strategic_merge_patch,
)

log = structlog.get_logger(__name__)

Authorize = Callable[[web.Request, Attributes], Awaitable[web.Response | None]]
_SUFFIX_ALPHABET: Final = string.ascii_lowercase + string.digits
# A patch without a resourceVersion is retried on a Manifest conflict, as kube-apiserver
# retries a patch against a concurrently updated object.
_PATCH_ATTEMPTS: Final = 5
_FIELD_MANAGER: Final = "clusternet-hub"
PARTIAL_API_VERSION: Final = "meta.k8s.io/v1"
# kube-apiserver's answer to a strategic merge patch of a custom resource.
CUSTOM_RESOURCE_PATCH_TYPES: Final = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)
_INCLUDE_OBJECT: Final = ("None", "Metadata", "Object")


class ShadowError(Exception):
    """An answer other than success, as a Kubernetes Status."""

    def __init__(self, code: int, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


_STRING_METADATA: Final = ("name", "generateName", "namespace", "resourceVersion", "uid")
_MAP_METADATA: Final = ("labels", "annotations")


def metadata_of(obj: Object) -> Object:
    """``obj``'s metadata (``{}`` when absent or null), refused with a 400 when it or one of
    the fields read here has the wrong type: found by the bad-input properties, such bodies
    used to end in a bare 500 (tests/e2e/test_bad_input_properties.py)."""
    metadata = obj.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ShadowError(400, f"metadata must be an object, got {type(metadata).__name__}")
    for key in _STRING_METADATA:
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            raise ShadowError(400, f"metadata.{key} must be a string")
    for key in _MAP_METADATA:
        value = metadata.get(key)
        if value is not None and not (
            isinstance(value, dict)
            and all(v is None or isinstance(v, str) for v in value.values())  # null: a patch
        ):
            raise ShadowError(400, f"metadata.{key} must be a map of strings")
    return metadata


class ShadowAPI:
    """The request handler of ``shadow/v1alpha1``; ``authorize`` answers the hub's
    SubjectAccessReview verdict (None when allowed)."""

    def __init__(
        self,
        parent: KubeClient,
        table: ResourceTable,
        reserved_namespace: str,
        authorize: Authorize,
    ) -> None:
        self.parent = parent
        self.table = table
        self.reserved_namespace = reserved_namespace
        self.authorize = authorize
        self.schemas = OpenAPISchemas(parent)

    async def discovery(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(api_resource_list(self.table.resources().values()))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # The raw path, split before unquoting: a name may hold an encoded "/" or "%".
        tail = request.rel_url.raw_path[len(PREFIX) + 1 :]
        segments = [unquote(s) for s in tail.split("/")]
        try:
            path = parse_path(segments)
        except BadPath:
            return status_response(404, "the server could not find the requested resource")
        resource = self.table.get(path.plural)
        if resource is None or not _routable(resource, path):
            return status_response(404, "the server could not find the requested resource")
        verb = _verb(request, path)
        attributes = Attributes(
            verb=verb,
            resource=path.plural,
            subresource=path.subresource or "",
            name=path.name or "",
            group=GROUP,
            namespace=path.namespace or "",
        )
        if (denied := await self.authorize(request, attributes)) is not None:
            return denied
        request_handler = _Request(self, request, resource, path)
        try:
            return await request_handler.serve(verb)
        except ShadowError as err:
            return status_response(err.code, err.message, reason=err.reason)
        except ApiError as err:
            return web.json_response(err.status, status=err.code)
        except ClusterUnreachable as err:
            return status_response(503, f"the parent cluster is unreachable: {err}")


def _routable(resource: ShadowResource, path: ShadowPath) -> bool:
    if path.namespace is not None and not resource.namespaced:
        return False
    if resource.namespaced and path.name is not None and path.namespace is None:
        return False
    if path.subresource == "status":
        return resource.has_status
    if path.subresource == "scale":
        return resource.has_scale
    return path.subresource is None


def _verb(request: web.Request, path: ShadowPath) -> str:
    if request.method == "GET" and path.name is None:
        return "watch" if request.query.get("watch") in ("true", "1") else "list"
    if request.method == "DELETE" and path.name is None:
        return "deletecollection"
    return verb_for_method(request.method)


class _Request:
    """One shadow request: its resource, path, and the Manifest storage."""

    def __init__(
        self, api: ShadowAPI, request: web.Request, resource: ShadowResource, path: ShadowPath
    ) -> None:
        self.api = api
        self.request = request
        self.resource = resource
        self.path = path
        self.parent = api.parent
        self.dry_run = bool(request.query.getall("dryRun", []))
        accept = request.headers.get("Accept", "")
        self.metadata_only = wants_partial_metadata(accept)
        # Tables for the main resource only (kubectl prints a Scale or a status as an object).
        self.as_table = path.subresource is None and shadow_printers.wants_table(accept)
        self.include_object = request.query.get("includeObject") or "Metadata"

    async def serve(self, verb: str) -> web.StreamResponse:
        if self.as_table and self.include_object not in _INCLUDE_OBJECT:
            raise ShadowError(
                400,
                f"includeObject must be one of {', '.join(_INCLUDE_OBJECT)}, not "
                f"{self.include_object!r}",
                reason="BadRequest",
            )
        if self.path.subresource == "status" and verb != "get":
            raise ShadowError(
                405,
                f"Clusternet does not allow to {self.request.method} status of "
                f"{self.resource.kind}: shadow objects are templates and have no status",
                reason="MethodNotAllowed",
            )
        if self.path.subresource == "scale" and verb not in ("get", "update", "patch"):
            raise ShadowError(405, f"{self.request.method} is not supported on scale")
        handlers: dict[str, Callable[[], Awaitable[web.StreamResponse]]] = {
            "get": self.get,
            "list": self.list,
            "watch": self.watch,
            "create": self.create,
            "update": self.update,
            "patch": self.patch,
            "delete": self.delete,
            "deletecollection": self.delete_collection,
        }
        handler = handlers.get(verb)
        if handler is None or (self.path.name is None and verb in ("update", "patch")):
            raise ShadowError(405, f"{self.request.method} is not supported on this path")
        if self.path.name is not None and verb == "create":
            raise ShadowError(405, "create posts to the collection, not to an object")
        return await handler()

    # ------------------------------------------------------------------ naming and errors

    def _qualified(self) -> str:
        return f"{self.resource.plural}.{GROUP}"

    def _manifest_name(self, name: str) -> str:
        return naming.manifest_name(self.resource.plural, name, self.path.namespace)

    def _not_found(self, name: str) -> ShadowError:
        return ShadowError(404, f'{self._qualified()} "{name}" not found')

    def _conflict(self, name: str) -> ShadowError:
        return ShadowError(
            409,
            f'Operation cannot be fulfilled on {self._qualified()} "{name}": the object has '
            "been modified; please apply your changes to the latest version and try again",
            reason="Conflict",
        )

    async def _manifest(self, name: str) -> Object:
        """The Manifest of ``name``: ``<plural>.<ns>.<name>``, or the dash form older hubs
        wrote (spec §2.3) when only such a Manifest exists."""
        try:
            return await self.parent.get(
                MANIFEST_API_VERSION,
                MANIFEST_KIND,
                self._manifest_name(name),
                namespace=self.api.reserved_namespace,
            )
        except NotFound:
            legacy = await self._legacy_manifest(name)
            if legacy is None:
                raise self._not_found(name) from None
            return legacy

    async def _legacy_manifest(self, name: str) -> Object | None:
        """The dash-named Manifest of ``name`` if it exists and its labels say it stores this
        very template (a dash name alone is ambiguous: ``deployments-a-b-c``)."""
        legacy_name = naming.legacy_manifest_name(self.resource.plural, name, self.path.namespace)
        try:
            found = await self.parent.get(
                MANIFEST_API_VERSION,
                MANIFEST_KIND,
                legacy_name,
                namespace=self.api.reserved_namespace,
            )
        except NotFound:
            return None
        labels = (found.get("metadata") or {}).get("labels") or {}
        expected = {
            known.CONFIG_KIND_LABEL: self.resource.kind,
            known.CONFIG_NAME_LABEL: name,
            known.CONFIG_NAMESPACE_LABEL: self.path.namespace or "",
        }
        if any(labels.get(key, "") != value for key, value in expected.items()):
            return None
        return found

    async def _store(self, manifest: Object, name: str) -> Object:
        try:
            return await self.parent.update(
                manifest, dry_run=self.dry_run, field_manager=_FIELD_MANAGER
            )
        except Conflict:
            raise self._conflict(name) from None
        except NotFound:
            raise self._not_found(name) from None

    # ------------------------------------------------------------------ reads

    async def get(self) -> web.StreamResponse:
        assert self.path.name is not None
        template = template_of(await self._manifest(self.path.name))
        if self.path.subresource == "scale":
            return web.json_response(scale_of(template))
        if self.as_table:
            return web.json_response(self._table([template]))
        return web.json_response(self._shaped(template))

    def _table(self, templates: list[Object], metadata: Mapping[str, Any] | None = None) -> Object:
        return shadow_printers.table(
            self.resource, templates, include_object=self.include_object, metadata=metadata
        )

    def _selector(self) -> str:
        try:
            return manifest_selector(
                self.resource,
                self.path.namespace,
                self.request.query.get("labelSelector"),
                self.request.query.get("fieldSelector"),
            )
        except UnsupportedSelector as err:
            raise ShadowError(400, str(err)) from None

    async def list(self) -> web.StreamResponse:
        query = self.request.query
        listed = await self.parent.list(
            MANIFEST_API_VERSION,
            MANIFEST_KIND,
            namespace=self.api.reserved_namespace,
            label_selector=self._selector(),
            limit=int(query["limit"]) if query.get("limit", "").isdigit() else None,
            continue_=query.get("continue") or None,
            resource_version=query.get("resourceVersion") or None,
            resource_version_match=query.get("resourceVersionMatch") or None,
        )
        metadata = {
            key: value
            for key, value in (listed.get("metadata") or {}).items()
            if key in ("resourceVersion", "continue", "remainingItemCount")
        }
        if self.as_table:
            templates = [template_of(item) for item in listed.get("items") or ()]
            return web.json_response(self._table(templates, metadata))
        items = [self._shaped(template_of(item)) for item in listed.get("items") or ()]
        if self.metadata_only:
            api_version, kind = PARTIAL_API_VERSION, "PartialObjectMetadataList"
        else:
            api_version, kind = self.resource.api_version, f"{self.resource.kind}List"
        return web.json_response(
            {"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items}
        )

    async def watch(self) -> web.StreamResponse:
        query = self.request.query
        selector = self._selector()
        timeout = query.get("timeoutSeconds", "")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(self.request)
        try:
            try:
                async with self.parent.watch(
                    MANIFEST_API_VERSION,
                    MANIFEST_KIND,
                    namespace=self.api.reserved_namespace,
                    resource_version=query.get("resourceVersion") or None,
                    label_selector=selector,
                    allow_bookmarks=query.get("allowWatchBookmarks") in ("true", "1"),
                    timeout_seconds=int(timeout) if timeout.isdigit() else None,
                    send_initial_events=query.get("sendInitialEvents") in ("true", "1"),
                ) as events:
                    async for event in events:
                        watched = self._watched(event.type, event.object)
                        await _write_event(response, event.type, watched)
            except ApiError as err:
                await _write_event(response, "ERROR", err.status)
            except ClusterUnreachable as err:
                unreachable = status_body(503, f"the parent cluster is unreachable: {err}")
                await _write_event(response, "ERROR", unreachable)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the watcher went away (kube-controller-manager's watches come and go)
        return response

    def _watched(self, event_type: str, manifest: Object) -> Object:
        if self.as_table:
            if event_type == "BOOKMARK":
                metadata = manifest.get("metadata") or {}
                return self._table([], {"resourceVersion": metadata.get("resourceVersion", "")})
            return self._table([template_of(manifest)])
        if event_type != "BOOKMARK":
            return self._shaped(template_of(manifest))
        # A bookmark carries only a resourceVersion (and the initial-events-end annotation).
        return self._shaped(
            {
                "apiVersion": self.resource.api_version,
                "kind": self.resource.kind,
                "metadata": manifest.get("metadata") or {},
            }
        )

    def _shaped(self, template: Object) -> Object:
        """The template, or only its metadata for metadata clients (the garbage collector,
        the quota and namespace controllers of kube-controller-manager watch every listable
        resource, shadow ones included, as PartialObjectMetadata)."""
        if not self.metadata_only:
            return template
        return {
            "apiVersion": PARTIAL_API_VERSION,
            "kind": "PartialObjectMetadata",
            "metadata": template.get("metadata") or {},
        }

    # ------------------------------------------------------------------ writes

    async def _body(self) -> Object:
        raw = await self.request.read()
        try:
            if "yaml" in self.request.content_type:
                body = yaml.safe_load(raw)
            else:
                body = json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as err:
            raise ShadowError(400, f"the request body is not valid: {err}") from None
        if not isinstance(body, dict):
            raise ShadowError(400, "the request body must be an object")
        return body

    def _check_object(self, obj: Object) -> Object:
        """The object, of this resource's kind, with the request's namespace (and name)."""
        api_version = obj.get("apiVersion")
        group, _, _version = (api_version if isinstance(api_version, str) else "").rpartition("/")
        if obj.get("kind") != self.resource.kind or group != self.resource.group:
            raise ShadowError(
                400,
                f"{self.resource.plural} of {GROUP_VERSION} store {self.resource.kind} "
                f"objects of group {self.resource.group or 'core'!r}, got kind "
                f"{obj.get('kind')!r} of apiVersion {obj.get('apiVersion')!r}",
            )
        metadata = obj["metadata"] = metadata_of(obj)
        if self.resource.namespaced:
            if metadata.get("namespace") not in (None, "", self.path.namespace):
                raise ShadowError(
                    400,
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request",
                )
            metadata["namespace"] = self.path.namespace
        else:
            metadata.pop("namespace", None)
        if self.path.name is not None and metadata.get("name") != self.path.name:
            raise ShadowError(
                400,
                f"the name of the object ({metadata.get('name')}) does not match the name on "
                f"the URL ({self.path.name})",
            )
        return obj

    async def create(self) -> web.StreamResponse:
        return await self._create(self._check_object(await self._body()))

    async def _create(self, obj: Object) -> web.StreamResponse:
        """Validate (unless skip-validating), trim and store a checked object."""
        metadata = obj["metadata"]
        if not metadata.get("name") and not metadata.get("generateName"):
            raise ShadowError(
                422,
                f'{self.resource.kind} "" is invalid: metadata.name: Required value: name or '
                "generateName is required",
                reason="Invalid",
            )
        annotations = metadata.get("annotations") or {}
        if annotations.get(known.SKIP_VALIDATING_ANNOTATION) == "true":
            if not metadata.get("name"):
                metadata["name"] = metadata["generateName"] + _suffix(5)
        else:
            obj = await self._validated(obj)
        template = trim(obj)
        if await self._legacy_manifest(template["metadata"]["name"]) is not None:
            raise self._already_exists(template["metadata"]["name"])
        manifest = new_manifest(self.resource, template, self.api.reserved_namespace)
        try:
            created = await self.parent.create(
                manifest, dry_run=self.dry_run, field_manager=_FIELD_MANAGER
            )
        except AlreadyExists:
            raise self._already_exists(template["metadata"]["name"]) from None
        return web.json_response(template_of(created), status=201)

    def _already_exists(self, name: str) -> ShadowError:
        return ShadowError(
            409, f'{self._qualified()} "{name}" already exists', reason="AlreadyExists"
        )

    async def _validated(self, obj: Object) -> Object:
        """The object validated and defaulted by a server-side dry-run create in the parent.

        Namespaced objects are tried in the reserved namespace, which exists whatever the
        template's namespace is; a real object of the same name there (or, for cluster-scoped
        kinds, anywhere) gets the trial a random suffix.  Name and namespace are restored.
        """
        trial = copy.deepcopy(obj)
        if self.resource.namespaced:
            trial["metadata"]["namespace"] = self.api.reserved_namespace
        try:
            try:
                result = await self._dry_run_create(trial)
            except AlreadyExists:
                if not obj["metadata"].get("name"):
                    raise  # a generated name clashed: the parent's answer stands
                trial["metadata"]["name"] = f"{obj['metadata']['name']}-{_suffix(3)}"
                result = await self._dry_run_create(trial)
        except UnknownKind:
            raise ShadowError(
                400,
                f"the parent cluster does not serve {obj['kind']} in {obj['apiVersion']}, so "
                f"the template cannot be validated; annotate it with "
                f'{known.SKIP_VALIDATING_ANNOTATION}: "true" to store it unvalidated',
            ) from None
        result_metadata = result.setdefault("metadata", {})
        result_metadata["name"] = obj["metadata"].get("name") or result_metadata.get("name")
        if self.resource.namespaced:
            result_metadata["namespace"] = obj["metadata"]["namespace"]
        return result

    async def _dry_run_create(self, trial: Object) -> Object:
        """``POST ...?dryRun=All`` of ``trial`` in the parent.  In the version the shadow
        resource mirrors, the URL is known from the resource table: the parent client's
        RESTMapper is not asked, as it may not have discovered a CRD the hub's informer
        already mirrors (it rediscovers at most every few seconds)."""
        group, version = naming.split_api_version(str(trial.get("apiVersion", "")))
        if (group, version) != (self.resource.group, self.resource.version):
            created: Object = await self.parent.create(trial, dry_run=True)
            return created
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        namespace = trial["metadata"].get("namespace") if self.resource.namespaced else None
        scope = f"/namespaces/{namespace}" if namespace else ""
        try:
            result: Object = await self.parent.request(
                "POST",
                f"{prefix}{scope}/{self.resource.plural}",
                params={"dryRun": "All"},
                body=trial,
            )
        except NotFound as err:
            # The collection does not exist: the parent stopped serving the kind.
            raise UnknownKind(err.message) from None
        return result

    async def update(self) -> web.StreamResponse:
        assert self.path.name is not None
        name = self.path.name
        body = await self._body()
        current = await self._manifest(name)
        if self.path.subresource == "scale":
            replicas = (body.get("spec") or {}).get("replicas")
            template = self._scaled(current, replicas)
        else:
            template = trim(self._check_object(body))
        updated = replace_template(current, template)
        expected = metadata_of(body).get("resourceVersion")
        if expected:
            updated["metadata"]["resourceVersion"] = expected
        stored = template_of(await self._store(updated, name))
        return web.json_response(scale_of(stored) if self.path.subresource else stored)

    def _scaled(self, manifest: Object, replicas: Any) -> Object:
        try:
            return with_replicas(manifest.get("template") or {}, replicas)
        except ValueError as err:
            raise ShadowError(422, f"Scale is invalid: {err}", reason="Invalid") from None

    async def patch(self) -> web.StreamResponse:
        assert self.path.name is not None
        content_type = self.request.content_type
        query = self.request.query
        if "force" in query and content_type != PatchType.APPLY:
            raise ShadowError(
                422,
                'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be '
                "specified for non-apply patch",
                reason="Invalid",
            )
        raw = await self.request.read()
        if content_type == PatchType.APPLY:
            return await self._apply(self.path.name, raw)
        apply_patch, conditional = self._patch_function(raw)
        return await self._patch_loop(self.path.name, apply_patch, conditional)

    async def _patch_loop(
        self,
        name: str,
        apply_patch: Callable[[Object], Awaitable[Object]],
        conditional: bool,
        create_missing: Object | None = None,
    ) -> web.StreamResponse:
        """Read, patch and store the template, retrying unconditional patches on Manifest
        conflicts; ``create_missing`` is created when there is no template (apply)."""
        for attempt in range(_PATCH_ATTEMPTS):
            last = attempt == _PATCH_ATTEMPTS - 1
            try:
                current = await self._manifest(name)
            except ShadowError as err:
                if err.code != 404 or create_missing is None:
                    raise
                try:
                    return await self._create(copy.deepcopy(create_missing))
                except ShadowError as create_error:
                    if create_error.reason != "AlreadyExists" or last:
                        raise
                    continue  # created meanwhile: apply to it
            view = template_of(current)
            if self.path.subresource == "scale":
                view = scale_of(view)
            patched = await apply_patch(view)
            expected = metadata_of(patched).get("resourceVersion")
            if conditional and expected != view["metadata"].get("resourceVersion"):
                raise self._conflict(name)
            if self.path.subresource == "scale":
                template = self._scaled(current, (patched.get("spec") or {}).get("replicas"))
            else:
                template = trim(self._check_object(patched))
            try:
                stored = template_of(await self._store(replace_template(current, template), name))
            except ShadowError as err:
                if err.code != 409 or conditional or last:
                    raise
                continue
            return web.json_response(scale_of(stored) if self.path.subresource else stored)
        raise self._conflict(name)  # unreachable: the last attempt raises or returns

    def _patch_function(self, raw: bytes) -> tuple[Callable[[Object], Awaitable[Object]], bool]:
        """How to apply the request's patch, and whether it names a resourceVersion, which
        makes it conditional (a conflict is then the caller's, not retried)."""
        content_type = self.request.content_type
        if content_type not in (PatchType.JSON, PatchType.MERGE, PatchType.STRATEGIC):
            raise ShadowError(
                415,
                f"the patch content type {content_type!r} is not supported",
                reason="UnsupportedMediaType",
            )
        if (
            content_type == PatchType.STRATEGIC
            and self.resource.custom
            and not self.path.subresource
        ):
            # CRDs have no Go types, so kube-apiserver refuses strategic merge patches.
            raise ShadowError(415, CUSTOM_RESOURCE_PATCH_TYPES, reason="UnsupportedMediaType")
        try:
            patch = json.loads(raw)
        except ValueError as err:
            raise ShadowError(400, f"the patch is not valid JSON: {err}") from None
        if content_type == PatchType.JSON:
            if not isinstance(patch, list):
                raise ShadowError(400, "a JSON patch must be a list of operations")

            async def apply_json_patch(view: Object) -> Object:
                try:
                    result: Object = jsonpatch.apply_patch(view, patch)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                    raise ShadowError(422, f"the JSON patch cannot be applied: {err}") from None
                except (TypeError, KeyError, ValueError, AttributeError) as err:  # malformed ops
                    raise ShadowError(400, f"the JSON patch is malformed: {err!r}") from None
                return result

            conditional = any(
                isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion"
                for op in patch
            )
            return apply_json_patch, conditional
        if not isinstance(patch, dict):
            raise ShadowError(400, "a merge patch must be a JSON object")
        conditional = "resourceVersion" in metadata_of(patch)
        if content_type == PatchType.STRATEGIC:

            async def apply_strategic_patch(view: Object) -> Object:
                return await self._strategic(view, patch)

            return apply_strategic_patch, conditional

        async def apply_merge_patch(view: Object) -> Object:
            result: Object = merge_patch(view, patch)
            return result

        return apply_merge_patch, conditional

    async def _strategic(self, view: Object, patch: Object) -> Object:
        """``patch`` applied to ``view`` with the merge keys of the parent's OpenAPI."""
        if self.path.subresource == "scale":
            schema = PatchSchema()  # a Scale has no lists
        else:
            schema = await self._patch_schema(view)
        try:
            return strategic_merge_patch(view, patch, schema)
        except StrategicPatchError as err:
            raise ShadowError(400, str(err), reason="BadRequest") from None

    async def _patch_schema(self, view: Object) -> PatchSchema:
        """The patch schema of the template's kind, in the template's version or else in the
        version the parent serves (templates may target a version only children serve)."""
        api_version = str(view.get("apiVersion") or self.resource.api_version)
        schema = await self.api.schemas.schema(api_version, self.resource.kind)
        if schema is None and api_version != self.resource.api_version:
            schema = await self.api.schemas.schema(self.resource.api_version, self.resource.kind)
        if schema is None:
            raise ShadowError(
                415,
                f"a strategic merge patch of {self.resource.kind} needs its merge keys, and the "
                f"parent publishes no OpenAPI v3 schema of it in {api_version}; use a merge "
                "patch (--type=merge) or a JSON patch (--type=json)",
                reason="UnsupportedMediaType",
            )
        return schema

    async def _apply(self, name: str, raw: bytes) -> web.StreamResponse:
        """Server-side apply, without field ownership: the applied configuration is created
        when there is no template, else merged over it (strategic merge for built-in kinds,
        JSON merge patch for custom resources).  See docs/shadow.md for the differences."""
        if not self.request.query.get("fieldManager"):
            raise ShadowError(
                422,
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                "required for apply patch",
                reason="Invalid",
            )
        try:
            applied = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ShadowError(400, f"the applied configuration is not valid YAML: {err}") from None
        if not isinstance(applied, dict):
            raise ShadowError(400, "the applied configuration must be an object")
        conditional = "resourceVersion" in metadata_of(applied)
        if self.path.subresource == "scale":

            async def apply_to_scale(view: Object) -> Object:
                result: Object = merge_patch(view, applied)
                return result

            return await self._patch_loop(name, apply_to_scale, conditional)
        applied = self._check_object(applied)

        async def apply_configuration(view: Object) -> Object:
            if self.resource.custom:
                result: Object = merge_patch(view, applied)
                return result
            return await self._strategic(view, applied)

        create = None if conditional else applied
        return await self._patch_loop(name, apply_configuration, conditional, create)

    async def delete(self) -> web.StreamResponse:
        assert self.path.name is not None
        name = self.path.name
        try:
            options = json.loads(await self.request.read() or b"{}")
        except ValueError as err:
            raise ShadowError(400, f"the DeleteOptions are not valid JSON: {err}") from None
        preconditions = (options.get("preconditions") or {}) if isinstance(options, dict) else {}
        manifest_name = self._manifest_name(name)
        legacy = None
        try:
            await self.parent.get(
                MANIFEST_API_VERSION,
                MANIFEST_KIND,
                manifest_name,
                namespace=self.api.reserved_namespace,
            )
        except NotFound:
            legacy = await self._legacy_manifest(name)
        if legacy is not None:
            manifest_name = legacy["metadata"]["name"]
        try:
            result = await self.parent.delete(
                MANIFEST_API_VERSION,
                MANIFEST_KIND,
                manifest_name,
                namespace=self.api.reserved_namespace,
                preconditions=Preconditions(
                    uid=preconditions.get("uid"),
                    resource_version=preconditions.get("resourceVersion"),
                )
                if preconditions
                else None,
                dry_run=self.dry_run,
            )
        except NotFound:
            raise self._not_found(name) from None
        except Conflict as err:
            raise ShadowError(409, err.message, reason="Conflict") from None
        if result.get("kind") == MANIFEST_KIND:
            # Finalizers (feed protection) keep it until the controllers let it go.
            return web.json_response(template_of(result))
        return web.json_response(self._deleted_status(name))

    def _deleted_status(self, name: str) -> Object:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": GROUP, "kind": self.resource.plural},
        }

    async def delete_collection(self) -> web.StreamResponse:
        """Deletes every selected template (upstream accepted and ignored it, §12.14)."""
        listed = await self.parent.list(
            MANIFEST_API_VERSION,
            MANIFEST_KIND,
            namespace=self.api.reserved_namespace,
            label_selector=self._selector(),
        )
        deleted = []
        for manifest in listed.get("items") or ():
            try:
                await self.parent.delete(
                    MANIFEST_API_VERSION,
                    MANIFEST_KIND,
                    manifest["metadata"]["name"],
                    namespace=self.api.reserved_namespace,
                    dry_run=self.dry_run,
                )
            except NotFound:
                continue  # deleted meanwhile: what was asked for
            deleted.append(template_of(manifest))
        return web.json_response(
            {
                "apiVersion": self.resource.api_version,
                "kind": f"{self.resource.kind}List",
                "metadata": {},
                "items": deleted,
            }
        )


async def _write_event(
    response: web.StreamResponse, event_type: str, obj: Mapping[str, Any]
) -> None:
    await response.write(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")


def wants_partial_metadata(accept: str) -> bool:
    """Whether the first JSON media type of an Accept header asks for
    ``as=PartialObjectMetadata[List]`` (other ``as=`` views, e.g. Table, are not served: the
    client falls back to the plain object, as its Accept header allows)."""
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        if media_type not in ("application/json", "*/*"):
            continue
        view = dict(p.partition("=")[::2] for p in parameters).get("as", "")
        return view in ("PartialObjectMetadata", "PartialObjectMetadataList")
    return False


def _suffix(length: int) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))
