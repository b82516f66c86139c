import { defineConfig } from "vite";

// `pnpm --filter @molecule/canvas build` writes dist/, which every API node serves at `/`.
// `pnpm --filter @molecule/canvas dev` proxies the API (MOLECULE_API, default the ./start URL).
const api = process.env.MOLECULE_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  root: import.meta.dirname,
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
    rollupOptions: {
      // zod (from the shared protocol constants) carries comments rollup cannot place; harmless.
      onwarn(w, warn) {
        if (w.code === "INVALID_ANNOTATION" && w.id?.includes("/zod/")) return;
        warn(w);
      },
    },
  },
  server: {
    host: "127.0.0.1",
    proxy: {
      "/workspaces": { target: api, ws: true, changeOrigin: false },
      "/docs": { target: api },
      "/reference": { target: api },
      "/openapi.json": { target: api },
    },
  },
});
