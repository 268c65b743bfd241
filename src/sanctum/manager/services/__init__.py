"""Domain services of the manager: plain functions over a session that raise Sanctum errors.

Routes call these; the CLI reaches them through the API. Services never see HTTP: they get a
:class:`~sanctum.manager.services.context.ServiceContext` (session, time, actor, request id).
"""
