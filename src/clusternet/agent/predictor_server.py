"""The agent's built-in predictor HTTP server (spec §5.5): ``POST /replicas/predict``.

Nodes and pods come from informers on the child cluster (watch-driven, no list per request).
The agent starts it when gate ``Predictor`` is on and no ``--predictor-addr`` is given::

    informers = SharedInformerFactory(child_client)
    server = PredictorServer(informers)      # asks for the Node and Pod informers
    informers.start()
    port = await server.start(host="127.0.0.1", port=options.predictor_port)
    ...
    await server.stop()
"""

from __future__ import annotations

from typing import Final

import structlog
from aiohttp import web
from pydantic import ValidationError

from clusternet.agent.predictor import NoFeasibleNodes, predict_replicas
from clusternet.apis.apps.v1alpha1 import ReplicaRequirements
from clusternet.runtime import SharedInformerFactory

log = structlog.get_logger(__name__)

PREDICT_PATH: Final = "/replicas/predict"
UNSCHEDULED_PATH: Final = "/replicas/unscheduled"
DEFAULT_TOPOLOGY: Final = "default"
# Terminal pods hold no resources: leave them out of the cache altogether.
_ACTIVE_PODS: Final = "status.phase!=Succeeded,status.phase!=Failed"


class PredictorServer:
    def __init__(self, informers: SharedInformerFactory) -> None:
        self.nodes = informers.informer("v1", "Node")
        self.pods = informers.informer("v1", "Pod", field_selector=_ACTIVE_PODS)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post(PREDICT_PATH, self._predict)
        app.router.add_get(UNSCHEDULED_PATH, self._unscheduled)
        return app

    async def _predict(self, request: web.Request) -> web.Response:
        if not (self.nodes.has_synced and self.pods.has_synced):
            return web.json_response({"error": "the node and pod caches are syncing"}, status=503)
        try:
            requirements = ReplicaRequirements.model_validate(await request.json())
        except (ValueError, ValidationError) as err:
            return web.json_response({"error": f"invalid ReplicaRequirements: {err}"}, status=400)
        try:
            replicas = predict_replicas(
                requirements, self.nodes.store.list(), self.pods.store.list()
            )
        except NoFeasibleNodes as err:
            return web.json_response({"error": str(err)}, status=500)
        except ValueError as err:  # an unparseable quantity in the request
            return web.json_response({"error": str(err)}, status=400)
        log.debug("predicted", replicas=replicas, cluster=request.headers.get("Cluster-ID"))
        return web.json_response({"replicas": {DEFAULT_TOPOLOGY: replicas}})

    async def _unscheduled(self, _request: web.Request) -> web.Response:
        # Declared upstream, never implemented there either (spec §12 item 5).
        return web.json_response({"error": "Not Implemented"}, status=501)

    async def start(self, host: str, port: int) -> int:
        """Serve on ``host:port`` (0: a free port); returns the bound port."""
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port)
        await self._site.start()
        bound: int = self._runner.addresses[0][1]
        log.info("serving the replica predictor", address=f"{host}:{bound}")
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
