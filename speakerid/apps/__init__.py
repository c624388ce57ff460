"""What people build on speakerid, inside the package: access control by voice with lockout and
an audit log (``access``), API key secrets (``keys``), evaluation on VoxCeleb1 (``evaluate``,
``voxceleb``) and of timelines against RTTM (``timeline_eval``), and corpus-size work on Ray
(``distributed``). Above the flows, below the API facade, the CLI and the service."""
