// A few routes under /console: the History API, so links are real URLs the API's SPA fallback serves.
import { useEffect, useState } from 'react';

export const BASE = '/console';

/** The route of the current URL, without the /console prefix ("/calls/call_1"). */
export function currentRoute(): string {
  const p = window.location.pathname;
  const r = p.startsWith(BASE) ? p.slice(BASE.length) : p;
  return r === '' || r === '/' ? '/calls' : r.replace(/\/$/, '');
}

/** Go to a console route without reloading the page. */
export function navigate(route: string): void {
  window.history.pushState(null, '', BASE + route);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

/** The current route, re-rendering on navigation. */
export function useRoute(): string {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const on = () => setRoute(currentRoute());
    window.addEventListener('popstate', on);
    return () => window.removeEventListener('popstate', on);
  }, []);
  return route;
}

/** An <a> to a console route: a real link (new tab works), in-page navigation on a plain click. */
export function linkProps(route: string) {
  return {
    href: BASE + route,
    onClick: (e: React.MouseEvent) => {
      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      navigate(route);
    },
  };
}
