import { useState } from 'react';
import { session } from './api';
import { linkProps, useRoute } from './router';
import { SignIn } from './pages/SignIn';
import { Calls } from './pages/Calls';
import { CallPage } from './pages/CallPage';
import { PlaceCall } from './pages/PlaceCall';
import { Builder } from './pages/Builder';
import { Sandbox } from './pages/Sandbox';

const NAV = [
  ['/calls', 'Calls'],
  ['/place', 'Place a call'],
  ['/builder', 'IVR builder'],
  ['/sandbox', 'Sandbox'],
] as const;

/** The console: sign in, then the page of the route. */
export function App() {
  const [key, setKey] = useState(session.get());
  const route = useRoute();
  if (!key) return <SignIn onSignedIn={(k) => { session.set(k); setKey(k); }} />;
  const signOut = () => { session.clear(); setKey(null); };
  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="top">
        <span className="brand">Canary Voice</span>
        <nav aria-label="Console">
          {NAV.map(([r, label]) => (
            <a key={r} {...linkProps(r)} aria-current={route.startsWith(r) ? 'page' : undefined}>{label}</a>
          ))}
        </nav>
        <span className="who">{key.slice(0, 12)}…</span>
        <button type="button" className="link" onClick={signOut}>Sign out</button>
      </header>
      <main id="main">{page(route)}</main>
    </>
  );
}

function page(route: string) {
  const call = route.match(/^\/calls\/([^/]+)$/);
  if (call) return <CallPage id={decodeURIComponent(call[1])} />;
  if (route.startsWith('/place')) return <PlaceCall />;
  if (route.startsWith('/builder')) return <Builder />;
  if (route.startsWith('/sandbox')) return <Sandbox />;
  return <Calls />;
}
