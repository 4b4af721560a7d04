"""Typed application state keys (aiohttp ``web.AppKey``)."""

from __future__ import annotations

from aiohttp import web

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.metrics import ControllerMetrics
from otel_adaprof.controller.opamp import OpampServer
from otel_adaprof.controller.polling import ControllerCore

CONFIG = web.AppKey("config", ControllerConfig)
METRICS = web.AppKey("metrics", ControllerMetrics)
CORE = web.AppKey("core", ControllerCore)
OPAMP = web.AppKey("opamp", OpampServer)
