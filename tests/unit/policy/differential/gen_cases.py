#!/usr/bin/env python3
"""Differential case generator for the tessera policy engine.

Generates random policies, rule lines and requests, runs them through the Qubes
reference implementation (a checkout of QubesOS/qubes-core-qrexec, used as a
library, not copied) and writes the expectations in the policy-cases.json
format. Run the conformance test on the output:

  python3 gen_cases.py --qrexec ~/src/qubes-core-qrexec --kind evaluate --seed 1 \
      --count 3000 --out /tmp/cases.json
  TESSERA_POLICY_CASES=/tmp/cases.json build/tests/unit_policy_test \
      --gtest_filter='Reference/*'
"""
import argparse, asyncio, json, random, sys

ap = argparse.ArgumentParser()
ap.add_argument('--qrexec', required=True, help='checkout of qubes-core-qrexec')
ap.add_argument('--kind', choices=['evaluate', 'rule_parse', 'policy_load'], required=True)
ap.add_argument('--seed', type=int, default=1)
ap.add_argument('--count', type=int, default=2000)
ap.add_argument('--cases', default=__file__.rsplit('/', 2)[0] + '/data/policy-cases.json',
                help='policy-cases.json providing the systems')
ap.add_argument('--out', required=True)
args = ap.parse_args()
sys.path.insert(0, args.qrexec)
from qrexec.policy import parser
from qrexec import exc
doc = json.load(open(args.cases))
random.seed(args.seed)

def gen_evaluate():
    # reference; output in policy-cases.json format (kind evaluate/collect_targets).

    systems = doc['systems']
    dom = systems['default']['domains']
    names = list(dom)
    info = {}
    for n, d in dom.items():
        d = dict(d); d['name'] = n
        d.setdefault('internal', False)
        info[n] = d
        info['uuid:' + d['uuid']] = d
    system_info = {'domains': info}

    tags = ['tag1', 'tag2', 'tag3', 'dom0-tag', 'nope']
    types = ['AppVM', 'TemplateVM', 'AdminVM', 'StandaloneVM', 'DispVM', 'RemoteVM']
    tpls = [n for n in names if dom[n]['template_for_dispvms']]
    def name():
        n = random.choice(names + ['nonexist'])
        if random.random() < 0.15 and n in dom: return 'uuid:' + dom[n]['uuid']
        return n
    def src_tok():
        return random.choice([name(), name(), '*', '@anyvm', '@anyvm', '@adminvm', '@type:' + random.choice(types),
                              '@tag:' + random.choice(tags), '@dispvm:' + random.choice(tpls + ['test-vm1']),
                              '@dispvm:@tag:' + random.choice(tags)])
    def tgt_tok():
        return random.choice([name(), name(), '*', '@anyvm', '@anyvm', '@adminvm', '@default', '@dispvm', '@dispvm',
                              '@type:' + random.choice(types), '@tag:' + random.choice(tags),
                              '@dispvm:' + random.choice(tpls), '@dispvm:@tag:' + random.choice(tags)])
    def redirect():
        return random.choice([name(), '@adminvm', '@dispvm', '@dispvm:' + random.choice(tpls + ['test-vm1']), 'dom0'])
    def rule():
        svc = random.choice(['*', 'test.S', 'test.S', 'test.T'])
        arg = '*' if svc == '*' else random.choice(['*', '*', '+a', '+'])
        action = random.choice(['allow', 'deny', 'ask', 'ask'])
        tgt = tgt_tok()
        params = []
        if action != 'deny' and random.random() < 0.35: params.append('target=' + redirect())
        if action == 'ask' and random.random() < 0.4: params.append('default_target=' + redirect())
        if action != 'deny' and random.random() < 0.15: params.append('user=u')
        if random.random() < 0.2: params.append('notify=' + random.choice(['yes', 'no']))
        if action != 'deny' and random.random() < 0.25: params.append('autostart=' + random.choice(['yes', 'no']))
        if tgt == '@default' and action == 'allow' and not any(p.startswith('target=') for p in params):
            params.append('target=' + redirect())
        return ' '.join([svc, arg, src_tok(), tgt, action] + params)

    class Ask(parser.AskResolution):
        async def execute(self): raise AssertionError('x')

    cases = []
    for i in range(args.count):
        text = '\n'.join(rule() for _ in range(random.randint(1, 8)))
        req = {'service': random.choice(['test.S', 'test.T', 'test.U']), 'argument': random.choice(['+', '+a', '+b']),
               'source': random.choice(names + ['nonexist']),
               'target': random.choice([name(), name(), '@default', '', '@dispvm', '@adminvm', 'dom0',
                                        '@dispvm:' + random.choice(tpls + ['test-vm1'])])}
        try:
            pol = parser.StringPolicy(policy=text)
        except exc.AccessDenied as e:
            continue
        base = {'id': 'diff.%d' % i, 'kind': 'evaluate', 'policy': text, 'request': req}
        try:
            request = parser.Request(req['service'], req['argument'], req['source'], req['target'],
                                     system_info=system_info, ask_resolution_type=Ask)
        except AssertionError:
            continue
        except exc.AccessDenied as e:
            base['expect'] = {'result': 'deny', 'stage': 'request', 'rule_index': None, 'error': type(e).__name__, 'message': str(e), 'notify': e.notify}
            cases.append(base); continue
        try:
            rule_ = pol.find_matching_rule(request)
            idx = pol.rules.index(rule_)
        except exc.AccessDenied:
            idx = None
        except Exception:
            continue
        try:
            res = pol.evaluate(request)
        except exc.AccessDenied as e:
            base['expect'] = {'result': 'deny', 'stage': 'evaluate', 'rule_index': idx, 'error': type(e).__name__, 'message': str(e), 'notify': e.notify}
            cases.append(base); continue
        except Exception as e:
            continue  # reference crash
        if isinstance(res, parser.AllowResolution):
            ex = {'result': 'allow', 'rule_index': idx, 'target': str(res.target), 'requested_target': str(request.target),
                  'user': res.user, 'notify': res.notify, 'autostart': res.autostart}
            try:
                ex['daemon_response'] = asyncio.run(res.execute())
            except exc.AccessDenied as e:
                ex['daemon_response'] = None
                ex['execute_error'] = {'error': type(e).__name__, 'message': str(e), 'notify': e.notify}
            except Exception:
                continue
        else:
            ex = {'result': 'ask', 'rule_index': idx, 'targets_for_ask': sorted(res.targets_for_ask),
                  'default_target': res.default_target, 'requested_target': str(request.target),
                  'user': res.user, 'notify': res.notify, 'autostart': res.autostart}
        base['expect'] = ex
        cases.append(base)
    json.dump({'schema': doc['schema'], 'systems': systems, 'cases': cases}, open(args.out, 'w'))
    print(len(cases))


def gen_rule_parse():
    pieces = ['test.S', '*', '+', '+a', 'a', 'x+y', 'a/b', '@anyvm', '@adminvm', '@default', '@dispvm', '@dispvm:x',
              '@dispvm:@tag:t', '@dispvm:@tag:', '@dispvm:', '@tag:', '@tag:x', '@type:', '@type:AppVM', '@bogus', 'vm1',
              'uuid:1234', '@uuid:1', 'allow', 'deny', 'ask', 'Allow', 'target=vm2', 'target=@dispvm', 'target=@anyvm',
              'target=', 'default_target=@dispvm', 'default_target=vm', 'user=root', 'user=', 'notify=yes', 'notify=no',
              'notify=1', 'autostart=no', 'autostart=yes', 'autostart=x', 'x=y', 'noeq', '#', '$anyvm', 'allow,target=x',
              'deny,notify=no', 'ask,default_target=@dispvm', '*']
    def rule_fields():
        n = random.choice([3, 4, 5, 5, 5, 6, 6, 7, 8])
        f = [random.choice(pieces) for _ in range(n)]
        if random.random() < 0.6 and n >= 5:
            f[0] = random.choice(['test.S', '*']); f[1] = random.choice(['*', '+a', '+'])
            f[2] = random.choice(['@anyvm', 'vm1', '@tag:x', '@dispvm:x', '*']); f[3] = random.choice(['@anyvm', '@default', '@dispvm', 'vm1', '@adminvm'])
            f[4] = random.choice(['allow', 'deny', 'ask'])
        return f
    cases = []
    for i in range(args.count):
        fmt = random.choice(['v5', 'v5', 'service'])
        f = rule_fields()
        if fmt == 'service':
            f = f[2:] if len(f) > 2 and random.random() < 0.7 else f
            if random.random() < 0.5 and len(f) > 3: f = f[:2] + [','.join(f[2:])]
        line = random.choice([' ', '\t', '  ']).join(f)
        c = {'id': 'p.%d' % i, 'kind': 'rule_parse', 'line': line, 'format': fmt}
        if fmt == 'service':
            c['service'] = random.choice(['test.S', '*', 'a+b']); c['argument'] = random.choice(['*', '+a', 'a'])
        try:
            if fmt == 'v5':
                r = parser.Rule.from_line(None, line.strip(), filepath='filename', lineno=12)
            else:
                r = parser.Rule.from_line_service(None, c['service'], c['argument'], line, filepath='filename', lineno=12)
        except exc.PolicySyntaxError as e:
            c['expect'] = {'ok': False, 'error': 'PolicySyntaxError', 'message': str(e), 'notify': True}
            cases.append(c); continue
        except Exception as e:
            continue
        def cls(t):
            m = {parser.WildcardVM: 'wildcard', parser.AdminVM: 'adminvm', parser.AnyVM: 'anyvm', parser.DefaultVM: 'default',
                 parser.TypeVM: 'type', parser.TagVM: 'tag', parser.DispVM: 'dispvm', parser.DispVMTemplate: 'dispvm_template',
                 parser.DispVMTag: 'dispvm_tag'}
            return m.get(type(t), 'name')
        a = r.action
        params = {'notify': a.notify}
        if not isinstance(a, parser.Deny):
            params.update(target=(str(a.target) if a.target is not None else None), user=a.user, autostart=a.autostart)
        if isinstance(a, parser.Ask):
            params['default_target'] = str(a.default_target) if a.default_target is not None else None
        c['expect'] = {'ok': True, 'rule': {'service': r.service, 'argument': r.argument, 'source': str(r.source), 'source_class': cls(r.source),
            'target': str(r.target), 'target_class': cls(r.target), 'action': str(a).split()[0], 'params': params}}
        if fmt == 'v5': c['expect']['str'] = str(r)
        cases.append(c)
    json.dump({'schema': doc['schema'], 'systems': doc['systems'], 'cases': cases}, open(args.out, 'w'))
    print(len(cases), sum(1 for c in cases if c['expect']['ok']))


def gen_policy_load():
    good = ['test.S * @anyvm @anyvm allow', 'test.S +a vm1 @default ask target=vm2', '* * @tag:x @dispvm deny',
            'test.T * @anyvm @adminvm allow autostart=no', '   # comment', '', 'bad line', 'test.S * @anyvm @default allow']
    svc_lines = ['@anyvm @anyvm allow', '$anyvm $anyvm deny', 'vm1 vm2 allow,target=vm3', '$include:inc2', '!include inc1',
                 '!include-dir x', 'bad', '@anyvm @anyvm ask,default_target=$dispvm', '# c']
    names = ['a', 'b', 'c', 'inc1', 'inc2']
    def v5line(depth):
        r = random.random()
        if r < 0.55: return random.choice(good)
        if r < 0.7: return '!include ' + random.choice(names + ['missing'])
        if r < 0.8: return '!include-service %s %s %s' % (random.choice(['test.S', '*', 'x/y']), random.choice(['*', '+a', 'a']), random.choice(names + ['missing']))
        if r < 0.85: return '!compat-4.0'
        if r < 0.9: return random.choice(['!include', '!include a b', '!compat-4.0 x', '!bogus', '!include-service a b'])
        return random.choice(good)
    cases = []
    for i in range(args.count):
        files = {'__main__': '\n'.join(v5line(0) for _ in range(random.randint(1, 6)))}
        for n in names:
            if random.random() < 0.7:
                if n.startswith('inc'):
                    files[n] = '\n'.join(random.choice(svc_lines) for _ in range(random.randint(0, 3)))
                else:
                    files[n] = '\n'.join(random.choice(good) for _ in range(random.randint(0, 3)))
        compat = {}
        for cn in ['test.S', 'test.S+a', 'test.S+b', 'test.T+x', 'a+b+c']:
            if random.random() < 0.4:
                compat[cn] = '\n'.join(random.choice(svc_lines[:3] + ['$include:inc9']) for _ in range(random.randint(0, 2)))
        if random.random() < 0.3: compat['inc9'] = 'vm9 vm9 deny'
        c = {'id': 'l.%d' % i, 'kind': 'policy_load', 'policy': {'files': files, 'compat_files': compat}}
        try:
            pol = parser.StringPolicy(policy=files, policy_compat=compat)
        except exc.AccessDenied as e:
            c['expect'] = {'ok': False, 'stage': 'parse', 'error': type(e).__name__, 'message': str(e), 'notify': True}
            cases.append(c); continue
        except (RecursionError, NotImplementedError, KeyError):
            continue
        def cls(t):
            m = {parser.WildcardVM: 'wildcard', parser.AdminVM: 'adminvm', parser.AnyVM: 'anyvm', parser.DefaultVM: 'default',
                 parser.TypeVM: 'type', parser.TagVM: 'tag', parser.DispVM: 'dispvm', parser.DispVMTemplate: 'dispvm_template',
                 parser.DispVMTag: 'dispvm_tag'}
            return m.get(type(t), 'name')
        rules = []
        for r in pol.rules:
            a = r.action
            params = {'notify': a.notify}
            if not isinstance(a, parser.Deny):
                params.update(target=(str(a.target) if a.target is not None else None), user=a.user, autostart=a.autostart)
            if isinstance(a, parser.Ask):
                params['default_target'] = str(a.default_target) if a.default_target is not None else None
            f = str(r.filepath)
            if f.endswith('[in-memory]'): f = f[:-len('[in-memory]')]
            rules.append({'service': r.service, 'argument': r.argument, 'source': str(r.source), 'source_class': cls(r.source),
                'target': str(r.target), 'target_class': cls(r.target), 'action': str(a).split()[0], 'params': params,
                'file': f, 'lineno': r.lineno})
        c['expect'] = {'ok': True, 'rules': rules}
        cases.append(c)
    json.dump({'schema': doc['schema'], 'systems': doc['systems'], 'cases': cases}, open(args.out, 'w'))
    print(len(cases), sum(1 for c in cases if c['expect']['ok']))


{'evaluate': gen_evaluate, 'rule_parse': gen_rule_parse, 'policy_load': gen_policy_load}[args.kind]()
