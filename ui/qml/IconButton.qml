// A flat round button showing a glyph, with a tooltip.
import QtQuick 2.15
import QtQuick.Controls 2.15
import "."

ToolButton {
    id: button
    property string glyph: ""
    property string tip: ""
    property color colour: Theme.subtle
    property int glyphSize: 20
    implicitWidth: 36
    implicitHeight: 36
    contentItem: Text {
        text: button.glyph
        color: button.colour
        font.pixelSize: button.glyphSize
        horizontalAlignment: Text.AlignHCenter
        verticalAlignment: Text.AlignVCenter
    }
    background: Rectangle {
        radius: width / 2
        color: button.down ? "#22000000" : button.hovered ? "#11000000" : "transparent"
    }
    ToolTip.visible: hovered && tip.length > 0
    ToolTip.delay: 500
    ToolTip.text: tip
}
