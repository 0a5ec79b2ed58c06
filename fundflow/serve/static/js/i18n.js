// English and Chinese labels; the domain terms in Chinese are those of the
// README (资金池, 挪用客户备付金, 期限错配 ...).

const LABELS = {
  en: {
    app_title: "fundflow triage", nav_queue: "Queue", nav_cases: "Cases", nav_deliveries: "Webhooks",
    lang_toggle: "中文", large_toggle: "Large type", sign_out: "Sign out", sign_in: "Sign in",
    name: "Name", password: "Password", bad_credentials: "Wrong name or password.",
    filters: "Filters", apply: "Apply", reset: "Reset", detector: "Detector", severity: "Severity",
    status: "Status", subject: "Subject", text: "Search", assignee: "Assignee", since: "Since",
    until: "Until", any: "any", amount: "Amount (yuan)", last_ts: "Last seen", first_ts: "First seen",
    summary: "Summary", cases: "Cases", next_page: "Next page", prev_page: "Previous page",
    no_alerts: "No alerts match.", counts: "By severity", total: "total",
    group_case: "Group selected into a case", case_title: "Case title", create: "Create",
    figures: "Figures", thresholds: "Thresholds in force", transactions: "Transactions named",
    graph: "Account graph", revisions: "Revisions", audit: "Audit trail", actions: "Actions",
    ack: "Acknowledge", close: "Close", reopen: "Reopen", assign: "Assign", comment: "Comment",
    add_to_case: "Add to case", case_id: "Case id", note: "Note", accounts: "Accounts",
    revision: "Revision", at: "When", action: "Action", actor: "Who", owner: "Owner",
    title: "Title", alerts: "Alerts", notes: "Notes and history", set_owner: "Set owner",
    close_case: "Close case", reopen_case: "Reopen case", add_alerts: "Add alerts (ids, comma-separated)",
    add: "Add", new_case: "New case", created_by: "Created by", updated_at: "Updated",
    deliveries: "Webhook deliveries", hook: "Hook", state: "State", attempts: "Attempts",
    last_error: "Last error", next_at: "Next attempt", retry: "Retry", notice: "Notice",
    kind: "Kind", loading: "Loading…", done: "Done.", graph_from_alert: "Built from the alert alone:",
    read_only: "You can read; acting needs the analyst role.", unassigned: "(nobody)",
    open: "open", acknowledged: "acknowledged", closed: "closed",
    low: "low", medium: "medium", high: "high", critical: "critical",
    pending: "pending", delivered: "delivered", dead: "dead", export: "Export",
    select: "Select", none_named: "none named",
  },
  zh: {
    app_title: "fundflow 预警处置", nav_queue: "预警队列", nav_cases: "案件", nav_deliveries: "Webhook 推送",
    lang_toggle: "English", large_toggle: "大字模式", sign_out: "退出", sign_in: "登录",
    name: "用户名", password: "密码", bad_credentials: "用户名或密码错误。",
    filters: "筛选", apply: "应用", reset: "重置", detector: "检测规则", severity: "严重程度",
    status: "状态", subject: "主体", text: "搜索", assignee: "处理人", since: "起始时间",
    until: "截止时间", any: "全部", amount: "金额（元）", last_ts: "最近发生", first_ts: "首次发生",
    summary: "摘要", cases: "案件", next_page: "下一页", prev_page: "上一页",
    no_alerts: "没有符合条件的预警。", counts: "按严重程度", total: "合计",
    group_case: "将所选预警归入新案件", case_title: "案件标题", create: "创建",
    figures: "数据", thresholds: "适用阈值", transactions: "涉及交易",
    graph: "账户关系图", revisions: "版本", audit: "审计记录", actions: "操作",
    ack: "确认", close: "关闭", reopen: "重新打开", assign: "分派", comment: "评论",
    add_to_case: "加入案件", case_id: "案件编号", note: "备注", accounts: "账户",
    revision: "版本", at: "时间", action: "动作", actor: "操作人", owner: "负责人",
    title: "标题", alerts: "预警", notes: "备注与历史", set_owner: "设置负责人",
    close_case: "结案", reopen_case: "重新立案", add_alerts: "加入预警（编号，以逗号分隔）",
    add: "加入", new_case: "新案件", created_by: "创建人", updated_at: "更新时间",
    deliveries: "Webhook 推送记录", hook: "接收端", state: "状态", attempts: "尝试次数",
    last_error: "最近错误", next_at: "下次尝试", retry: "重试", notice: "通知",
    kind: "类型", loading: "加载中…", done: "完成。", graph_from_alert: "仅根据预警本身绘制：",
    read_only: "您只能查看；处置需要分析员角色。", unassigned: "（无）",
    open: "待处理", acknowledged: "已确认", closed: "已关闭",
    low: "低", medium: "中", high: "高", critical: "严重",
    pending: "待发送", delivered: "已送达", dead: "失败", export: "导出",
    select: "选择", none_named: "无",
  },
};

// Detector names: the regulatory terms of the README.
const DETECTORS = {
  en: {
    fund_pool: "fund pool", reserve_misuse: "misuse of client reserves",
    maturity_mismatch: "maturity mismatch", self_financing: "self-financing",
    guaranteed_return: "guaranteed principal and interest", excessive_return: "excessive returns",
    cross_bank_clearing: "disguised cross-bank clearing", unlicensed_business: "unlicensed business",
    down_payment_loan: "down-payment loan", private_product_split: "split private product",
    fan_in: "fan-in", fan_out: "fan-out", cycle: "cycle", gather_scatter: "gather-scatter",
    scatter_gather: "scatter-gather",
  },
  zh: {
    fund_pool: "资金池", reserve_misuse: "挪用客户备付金", maturity_mismatch: "期限错配",
    self_financing: "自融", guaranteed_return: "保本保息", excessive_return: "超高回报/补贴",
    cross_bank_clearing: "变相跨行清算", unlicensed_business: "无证经营",
    down_payment_loan: "首付贷", private_product_split: "私募拆分",
    fan_in: "分散转入集中", fan_out: "集中转出分散", cycle: "循环转账",
    gather_scatter: "先聚后散", scatter_gather: "先散后聚",
  },
};

export const DETECTOR_NAMES = Object.keys(DETECTORS.en);
let lang = localStorage.getItem("ff-lang") === "zh" ? "zh" : "en";

export function t(key) {
  return LABELS[lang][key] ?? LABELS.en[key] ?? key;
}

export function detectorLabel(name) {
  const label = DETECTORS[lang][name];
  return label ? `${label} (${name})` : name;
}

export function currentLang() { return lang; }

export function toggleLang() {
  lang = lang === "en" ? "zh" : "en";
  localStorage.setItem("ff-lang", lang);
  applyStatic();
}

export function applyStatic() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}
