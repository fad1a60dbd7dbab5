import { defineConfig } from 'tsup'

// ESM first, CommonJS beside it, declarations for both (see package.json "exports").
export default defineConfig({
  entry: { index: 'index.ts', 'test-suite': 'test-suite.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  tsconfig: 'tsconfig.json',
})
