import { createRequire } from "node:module";
import { Router } from "express";

const require = createRequire(import.meta.url);
/** Redoc's self-contained browser bundle, served from this origin (no CDN). */
const REDOC_JS = require.resolve("redoc/bundles/redoc.standalone.js");

/**
 * As strict as the Canvas's: scripts only from this origin. Redoc's search runs in a worker it
 * makes from a blob of its own bundle (worker-src blob:); its styles are inline (styled-components).
 */
export const REFERENCE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "worker-src blob:",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="referrer" content="no-referrer" />
    <title>Molecule API reference</title>
    <style>
      body { margin: 0; }
      /* The sidebar's "API docs by Redocly" badge loads its logo from a CDN (blocked by the CSP). */
      a[href^="https://redocly.com/redoc"] { display: none !important; }
    </style>
  </head>
  <body>
    <redoc spec-url="/openapi.json" path-in-middle-panel="true" required-props-first="true" sort-props-alphabetically="false"></redoc>
    <script src="/reference/redoc.standalone.js"></script>
  </body>
</html>
`;

/** GET /reference: the OpenAPI document (/openapi.json) rendered by Redoc, bundled. */
export function referenceRoutes(): Router {
  const r = Router();
  r.get("/reference", (_req, res) => {
    res.setHeader("Content-Security-Policy", REFERENCE_CSP);
    res.setHeader("Cache-Control", "no-cache");
    res.type("html").send(PAGE);
  });
  r.get("/reference/redoc.standalone.js", (_req, res, next) => {
    // dotfiles: the resolved path runs through pnpm's node_modules/.pnpm store.
    res.sendFile(REDOC_JS, { maxAge: "1d", dotfiles: "allow", headers: { "Content-Type": "text/javascript; charset=utf-8" } }, (err) => {
      if (err) next(err);
    });
  });
  return r;
}
