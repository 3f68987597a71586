/** The console's entry point (bundled by scripts/build-assets.js). */
import { render } from 'preact';
import { App } from './App';
import './app.css';

render(<App />, document.getElementById('app')!);
