"""IVR menus: list, read, create or replace (validated as ``ctc ivr import`` validates a
file), delete."""

from __future__ import annotations

from aiohttp import web

from engine.api.endpoints import ApiRequest, json_response, read_json_object, router
from engine.api.models import IvrMenuIn, IvrMenuListOut, IvrMenuOut
from engine.api.routes.common import API, error_responses, use_cases
from engine.app.ivr_menus import menu_entries
from engine.store.records import StoredIvrMenu

__all__ = ["delete_ivr_menu", "get_ivr_menu", "list_ivr_menus", "put_ivr_menu"]

IVR = f"{API}/ivr-menus"


def _menu_out(stored: StoredIvrMenu) -> IvrMenuOut:
    entry = menu_entries({stored.menu.name: stored.menu})[stored.menu.name]
    return IvrMenuOut(
        name=stored.menu.name, version=stored.version, menu=IvrMenuIn.model_validate(entry)
    )


@router.route(
    "GET",
    IVR,
    summary="List the tenant's IVR menus",
    tags=("ivr",),
    responses={200: IvrMenuListOut, **error_responses(401)},
)
async def list_ivr_menus(req: ApiRequest) -> web.StreamResponse:
    stored = await use_cases(req).ivr_menus.stored(req.require_tenant())
    return json_response(IvrMenuListOut(items=[_menu_out(s) for s in stored]))


@router.route(
    "GET",
    f"{IVR}/{{name}}",
    summary="One IVR menu",
    tags=("ivr",),
    responses={200: IvrMenuOut, **error_responses(401, 404)},
)
async def get_ivr_menu(req: ApiRequest) -> web.StreamResponse:
    stored = await use_cases(req).ivr_menus.get(req.require_tenant(), req.raw.match_info["name"])
    return json_response(_menu_out(stored))


@router.route(
    "PUT",
    f"{IVR}/{{name}}",
    summary="Create or replace one IVR menu",
    tags=("ivr",),
    body_content={"application/json": {"schema": {"$ref": "#/components/schemas/IvrMenuIn"}}},
    responses={
        200: IvrMenuOut,
        201: IvrMenuOut,
        **error_responses(400, 401, 413, 422),
    },
)
async def put_ivr_menu(req: ApiRequest) -> web.StreamResponse:
    """The body is one menu as in a menus YAML file (`ctc ivr import`), validated by the same
    loader: unknown or duplicate keys, invalid digits, fields an action needs, and target
    menus (checked against the tenant's other menus) are 422 naming the field. Replacing a
    menu bumps its `version`; 201 when it is new."""
    name = req.raw.match_info["name"]
    text, data = await read_json_object(req.raw)  # 400 unless JSON, 422 unless an object
    saved, created = await use_cases(req).ivr_menus.save_json(
        req.require_tenant(), name, text, data
    )
    return json_response(_menu_out(saved), 201 if created else 200, {"Location": f"{IVR}/{name}"})


@router.route(
    "DELETE",
    f"{IVR}/{{name}}",
    summary="Delete an IVR menu",
    tags=("ivr",),
    responses={204: None, **error_responses(401, 404, 409)},
)
async def delete_ivr_menu(req: ApiRequest) -> web.StreamResponse:
    """409 while another menu, a routing rule or call history refers to it."""
    await use_cases(req).ivr_menus.delete(req.require_tenant(), req.raw.match_info["name"])
    return json_response(None, 204)
