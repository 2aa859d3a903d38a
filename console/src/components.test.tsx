import { describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { FlowGraph } from './components/FlowGraph';
import { starterFlow } from './flow';
import { SignIn } from './pages/SignIn';

describe('FlowGraph', () => {
  it('shows an error on the node it concerns and selects nodes by keyboard', () => {
    const onSelect = vi.fn();
    const errors = new Map([['menu', [{ field: 'steps.menu', code: 'missing_target', message: "branches.2 -> 'nowhere' is not a step" }]]]);
    const { container } = render(<FlowGraph flow={starterFlow()} selected={null} onSelect={onSelect} errors={errors} path={['menu', 'sales']} />);
    const menu = screen.getByRole('button', { name: /Step menu, gather, start, 1 error/ });
    expect(menu).toHaveClass('invalid');
    expect(screen.getByRole('button', { name: /Step sales/ })).not.toHaveClass('invalid');
    expect(container.querySelector('[data-edge="menu>sales"]')).toHaveClass('walked');
    fireEvent.keyDown(screen.getByRole('button', { name: /Step bye/ }), { key: 'Enter' });
    expect(onSelect).toHaveBeenCalledWith('bye');
  });
});

describe('SignIn', () => {
  it('checks the key with the API before keeping it', async () => {
    const fetchMock = vi.fn().mockResolvedValueOnce(new Response(JSON.stringify({ error: { code: 'invalid_api_key', message: 'invalid or revoked API key' } }), { status: 401 }))
      .mockResolvedValueOnce(new Response(JSON.stringify({ data: [] }), { status: 200 }));
    vi.stubGlobal('fetch', fetchMock);
    const onSignedIn = vi.fn();
    render(<SignIn onSignedIn={onSignedIn} />);
    const input = screen.getByLabelText('API key');
    fireEvent.change(input, { target: { value: 'sk_test_bad' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('invalid or revoked API key');
    expect(onSignedIn).not.toHaveBeenCalled();
    fireEvent.change(input, { target: { value: 'sk_test_good' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    await waitFor(() => expect(onSignedIn).toHaveBeenCalledWith('sk_test_good'));
    expect(fetchMock.mock.calls[1][1].headers.Authorization).toBe('Bearer sk_test_good');
    vi.unstubAllGlobals();
  });
});
