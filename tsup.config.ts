import { defineConfig } from 'tsup'

// ESM first, CommonJS beside it, declarations for both (see package.json "exports").
// The `snapcow` program (package.json "bin") is one ESM file with its shebang.
export default defineConfig([{
  entry: { index: 'index.ts', 'test-suite': 'test-suite.ts', nbd: 'nbd.ts', testing: 'testing.ts' },
  format: ['esm', 'cjs'],
  // @internal members (test hooks, the engine behind a volume) stay out of the published types.
  dts: { compilerOptions: { stripInternal: true } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  tsconfig: 'tsconfig.json',
}, {
  entry: { cli: 'cli/main.ts' },
  format: ['esm'],
  banner: { js: '#!/usr/bin/env node' },
  sourcemap: true,
  clean: false, // the library's build cleans dist/ first
  target: 'node20',
  tsconfig: 'tsconfig.json',
}])
